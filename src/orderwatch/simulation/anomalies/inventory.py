"""Inventory anomalies planned apart from a journey: erp drifting from wms. (An oversold line and
a failed reservation bend a healthy journey: hooks in ``journeys.py``.)"""

from __future__ import annotations

from orderwatch.simulation.journeys import Journeys
from orderwatch.simulation.world import _DUE, MINUTE, WAREHOUSES, Life


class InventoryAnomalies(Journeys):
    """``inventory.sync_drift``: a drifting round of snapshots, or in the demo a burst of two."""

    def _inject_drift(self, at: float) -> None:
        rule = "inventory.sync_drift"
        r = self.rng
        if self.cfg.demo:
            sku, wh = f"SKU-DRIFT-{next(self._order_no):06d}", r.choice(WAREHOUSES)
            self._expect(rule, f"{sku}/{wh}")
            self._arrive(at, self._wrap(lambda: self._drift_burst(sku, wh, at)))
            return
        sku, wh = r.choice(self.skus), r.choice(WAREHOUSES)
        rnd = r.randrange(self.rounds - 1)
        self.drifts[(sku, wh, rnd)] = r.randint(25, 60)  # percent off, far beyond max(5, 10 %)
        self._expect(rule, f"{sku}/{wh}")

    def _drift_burst(self, sku: str, wh: str, at: float) -> Life:
        wms = self._ev(
            "inventory.snapshot", at, "wms", False, sku=sku, warehouse_id=wh, available=120
        )
        erp = self._ev(
            "inventory.snapshot", at, "erp", False, sku=sku, warehouse_id=wh, available=170
        )
        yield at, wms
        erp[_DUE] = at + 15 * MINUTE + 1
        yield at + 1, erp
