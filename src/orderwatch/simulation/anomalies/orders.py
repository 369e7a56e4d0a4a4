"""Order anomalies: creations that fail (alone or in a spike) and an order shipped unpaid. (A
status going back bends a journey: a hook in ``journeys.py``.)"""

from __future__ import annotations

from typing import Any

from orderwatch.engine.lifecycle import iso
from orderwatch.simulation.journeys import Journeys
from orderwatch.simulation.people import _Order
from orderwatch.simulation.world import Life, window_start


class OrderAnomalies(Journeys):
    """``order.creation_failed``, ``order.creation_failure_spike``, ``order.shipped_unpaid``."""

    def _inject_creation_spike(self, rule: str, at: float) -> None:
        """More than the window's minimum of failures, all in the window of ``at``."""
        w = window_start(at)
        self._expect(rule, iso(w))
        self._arrive(w + 5, lambda: self._creation_failures(w + 5, 12, rule))

    def _inject_creation_failed(self, rule: str, at: float) -> None:
        self._arrive(at, lambda: self._creation_failures(at, 1, rule))

    def _shipped_unpaid(self, o: _Order) -> Life:
        """order.shipped_unpaid: cash on delivery, shipped before any payment."""
        r, t0 = self.rng, o.at
        yield self._created(o, t0, None)
        yield self._status(o, t0 + 1, "pending_payment", None)
        yield from self._fulfil(o, t0 + r.uniform(60, 300), "", cod=True)

    def _creation_failures(self, at: float, count: int, cause: str) -> Life:
        r = self.rng
        t = at
        for _ in range(count):
            with_id = r.random() < 0.5
            oid = f"SO{self.cfg.seed % 10000:04d}{next(self._order_no):08d}" if with_id else None
            fields: dict[str, Any] = {"error_code": r.choice(("DB_TIMEOUT", "STOCK_SERVICE_5XX"))}
            fields["error_message"] = "upstream timed out"
            fields["customer_id"] = f"C{r.randrange(self._pool_size):08d}"
            if oid:
                fields["order_id"] = oid
            ev = self._ev("order.creation_failed", t, "oms", True, **fields)
            self._expect("order.creation_failed", oid or ev["event_id"], cause)
            yield t, ev
            t += r.uniform(5, 15) if count > 1 else 0
