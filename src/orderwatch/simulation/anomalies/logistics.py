"""Logistics anomalies planned apart from a journey: a late shipment after payment, a parcel
scanned under an order this shop never had. (Delays, stale tracking, losses and rejections bend a
healthy journey: hooks in ``journeys.py``.)"""

from __future__ import annotations

from orderwatch.simulation.journeys import Journeys
from orderwatch.simulation.people import _Order
from orderwatch.simulation.world import _CN_CARRIERS, _CN_HUBS, _DUE, HOUR, MINUTE, Life, Step


class LogisticsAnomalies(Journeys):
    """``logistics.*`` injectors and the lifecycles they plan."""

    def _inject_stray_scan(self, rule: str, at: float) -> None:
        """logistics.orphan: planned under an external order id of its own."""
        oid = f"EXT{next(self._order_no):09d}"
        self._expect(rule, oid)
        self._arrive(at, self._wrap(lambda: self._stray_scan(oid, at)))

    def _paid_then(self, o: _Order, _: str) -> Life:
        """logistics.not_shipped: paid normally, shipped only after the 48 h deadline."""
        r, t0 = self.rng, o.at
        yield self._created(o, t0, None)
        yield self._status(o, t0 + 1, "pending_payment", None)
        tries, ts = self._attempts(t0 + r.uniform(20, 480), False)
        pid = ""
        for k, (t, ok) in enumerate(tries):
            pid = f"PAY{o.n:09d}{k}"
            yield self._payment(o, t, ok, pid)
        o.extra["paid_at"] = ts
        t_paid = ts + r.uniform(25, 90)
        status = self._status(o, t_paid, "paid", "pending_payment")
        status[1][_DUE] = ts + 48 * HOUR
        yield status
        yield from self._fulfil(o, t_paid, pid)

    def _stray_scan(self, oid: str, at: float) -> Life:
        """logistics.orphan: a carrier scans a parcel under an order id this shop never had."""
        t, ev = self._scan_for(oid, at)
        ev[_DUE] = at + 10 * MINUTE
        yield t, ev

    def _scan_for(self, oid: str, at: float) -> Step:
        carrier, prefix = _CN_CARRIERS[0]
        return at, self._ev(
            "logistics.scanned",
            at,
            carrier,
            False,
            order_id=oid,
            tracking_no=f"{prefix}9{oid[3:]}",
            carrier=carrier,
            location=_CN_HUBS[0],
        )
