"""Healthy journeys: an order from checkout to completion inside every default threshold, and the
streams beside the orders (stock snapshots, the risk team's blacklist changes).

Anomalies that bend a journey midway (a shortage, a late shipment, a stale or lost parcel, a
rejected delivery) are hooks on ``Order.twist`` here, where the journey they bend is; the ones
that diverge before fulfilment are in ``simulation/anomalies/``.
"""

from __future__ import annotations

from collections.abc import Generator

from orderwatch.simulation.people import _Order
from orderwatch.simulation.shop import Shop
from orderwatch.simulation.world import (
    _CN_CARRIERS,
    _DUE,
    _INTL_CARRIERS,
    DAY,
    HOUR,
    MINUTE,
    SNAPSHOT_EVERY,
    WAREHOUSES,
    WINDOW,
    Life,
    Step,
    window_start,
)


class Journeys(Shop):
    """Healthy lifecycles, lazily advanced: each ``yield`` is one event at its simulated time."""

    def _attempts(self, t: float, fail_first: bool) -> tuple[list[tuple[float, bool]], float]:
        """Payment attempts from ``t``: a declined first try, and retries around outages."""
        r = self.rng
        tries: list[tuple[float, bool]] = []
        if fail_first:
            tries.append((t, False))
            t += r.uniform(40, 300)
        while window_start(t) in self.outages:
            tries.append((t, False))
            t = window_start(t) + WINDOW + r.uniform(20, 240)
        tries.append((t, True))
        return tries, t

    def _order(self, o: _Order) -> Life:
        """A healthy order from checkout to completion, inside every default threshold."""
        paid = yield from self._checkout(o)
        if paid is not None:
            yield from self._fulfil(o, *paid)

    def _checkout(self, o: _Order) -> Generator[Step, None, tuple[float, str] | None]:
        """created -> pending -> paid; returns (status paid time, payment_id) or None."""
        r, t0 = self.rng, o.at
        promised = None
        if o.promise and o.twist == "logistics.delivery_delayed":
            promised = o.extra["promised"] = t0 + r.uniform(2, 3) * DAY
        elif o.promise:
            # generous: healthy transit ends within 6 days of the order
            promised = t0 + r.uniform(7, 9) * DAY
        yield self._created(o, t0, promised)
        yield self._status(o, t0 + r.uniform(0.5, 2), "pending_payment", None)
        start = o.extra.get("pay_at", t0 + r.uniform(20, 480))
        if o.cancel == "unpaid" and not o.fail_first:
            yield self._status(o, start + r.uniform(300, 1200), "cancelled", "pending_payment")
            return None
        tries, ts = self._attempts(start, o.fail_first)
        pid = ""
        for k, (t, ok) in enumerate(tries):
            pid = f"PAY{o.n:09d}{k}"
            if not ok and o.cancel == "unpaid":
                yield self._payment(o, t, False, pid)
                yield self._status(o, t + r.uniform(180, 1200), "cancelled", "pending_payment")
                return None
            yield self._payment(o, t, ok, pid)
        last = ts
        if r.random() < 0.3:  # the gateway calls back again: same payment_id, new event_id
            last = ts + r.uniform(2, 20)
            yield self._payment(o, last, True, pid)
        t_paid = last + r.uniform(25, 90)
        yield self._status(o, t_paid, "paid", "pending_payment")
        return t_paid, pid

    def _fulfil(self, o: _Order, t_paid: float, pid: str, cod: bool = False) -> Life:
        """Reserve, allocate, ship, scan, deliver, complete: every gap well inside its rule."""
        r = self.rng
        tw = o.twist
        t = yield from self._reserve(o, t_paid)
        status = "pending_payment" if cod else "paid"
        if not cod:
            t += r.uniform(60, 1800)
            yield self._status(o, t, "allocated", "paid")
            status = "allocated"
        if o.cancel == "paid":  # the customer cancels before shipping: refund and release
            yield from self._cancel_paid(o, t, pid, status)
            return
        carriers = _CN_CARRIERS if o.customer.cn else _INTL_CARRIERS
        carrier, prefix = carriers[o.n % len(carriers)]
        o.extra["carrier"] = carrier
        tracking = f"{prefix}{o.n:011d}"
        if tw == "logistics.not_shipped":
            ship = o.extra["paid_at"] + 48 * HOUR + r.uniform(1, 12) * HOUR
        elif cod:
            ship = t + r.uniform(HOUR, 6 * HOUR)
        else:
            ship = t + r.uniform(HOUR, 36 * HOUR)
        shipped = self._logi(o, ship, "shipped", tracking)
        if tw == "order.shipped_unpaid":
            shipped[1][_DUE] = ship + 10 * MINUTE
        yield shipped
        if not cod:
            yield self._status(o, ship + r.uniform(10, 600), "shipped", status)
            status = "shipped"
            if tw == "order.status_regression":
                t_back = ship + r.uniform(700, 1800)
                yield self._status(o, t_back, "allocated", "shipped")  # a stale OMS replica
                status = "allocated"
        yield from self._transit(o, ship, tracking, status, cod)

    def _reserve(self, o: _Order, t: float) -> Generator[Step, None, float]:
        """Each line reserved from the warehouse; returns when the last one is."""
        r = self.rng
        tw = o.twist
        for sku, qty, _ in o.items:
            t += r.uniform(1, 5)
            if tw == "inventory.oversold" and sku == o.items[0][0]:
                yield from self._short(o, t, sku, qty)
                t = o.extra["restocked_at"]
            elif tw == "inventory.reservation_failed" and sku == o.items[0][0]:
                reason = ("lock_timeout", "conflict", "other")[o.variant % 3]
                yield self._stock_ev(o, t, "inventory.reservation_failed", sku, qty, reason=reason)
                t += r.uniform(60, 600)
            yield self._stock_ev(
                o, t, "inventory.reserved", sku, qty, available_after=self._take(o, sku, qty)
            )
        return t

    def _cancel_paid(self, o: _Order, t: float, pid: str, status: str) -> Life:
        """Cancelled after payment, before shipping: refunded, its stock released."""
        r = self.rng
        t += r.uniform(600, 3 * HOUR)
        yield self._refund(o, t, pid)
        yield self._status(o, t + r.uniform(1, 30), "cancelled", status)
        t += 60
        for sku, qty, _ in o.items:
            t += r.uniform(1, 5)
            self.stock[(sku, o.customer.warehouse)] += qty
            yield self._stock_ev(o, t, "inventory.released", sku, qty)

    def _short(self, o: _Order, t: float, sku: str, qty: int) -> Life:
        """inventory.oversold: the paid order finds no stock, until the warehouse restocks."""
        r = self.rng
        if o.variant % 2:
            yield self._stock_ev(
                o, t, "inventory.reservation_failed", sku, qty, reason="insufficient_stock"
            )
        else:
            yield self._stock_ev(
                o, t, "inventory.reserved", sku, qty, available_after=-r.randint(1, qty + 3)
            )
        o.extra["restocked_at"] = t + r.uniform(HOUR, 6 * HOUR)

    def _transit(self, o: _Order, ship: float, tracking: str, status: str, cod: bool) -> Life:
        """From the warehouse to the door: scans in transit, the delivery, the end of the order."""
        r = self.rng
        tw = o.twist
        if tw == "logistics.delivery_delayed" and o.promise:
            delivered = max(ship + DAY, o.extra["promised"] + r.uniform(6, 30) * HOUR)
        elif tw == "logistics.delivery_delayed":
            delivered = ship + 7 * DAY + r.uniform(10, 30) * HOUR
        elif tw == "logistics.tracking_stale":
            delivered = ship + r.uniform(100, 130) * HOUR
        else:
            delivered = ship + r.uniform(24, 96) * HOUR
        ofd = delivered - r.uniform(2, 8) * HOUR
        tracking = yield from self._scans(o, ship, ofd, tracking)
        if tw in ("logistics.rejected", "customer.unreachable"):
            ofd, delivered = yield from self._failed_attempt(o, ofd, tracking)
        yield from self._delivery(o, ofd, delivered, tracking, status, cod)

    def _scans(
        self, o: _Order, ship: float, ofd: float, tracking: str
    ) -> Generator[Step, None, str]:
        """Hub scans until out for delivery; returns the tracking number (a lost parcel's
        replacement has its own)."""
        r = self.rng
        tw = o.twist
        t = ship + r.uniform(1, 8) * HOUR
        stale_done = False
        deadline = ship + 7 * DAY
        while t < ofd - HOUR:
            scan = self._scan(o, t, tracking)
            gap = r.uniform(8, 20) * HOUR
            if tw == "logistics.tracking_stale" and not stale_done:
                scan[1][_DUE] = t + 72 * HOUR
                gap, stale_done = 72 * HOUR + r.uniform(1, 8) * HOUR, True
            elif tw == "logistics.delivery_delayed" and not o.promise and t + gap >= deadline:
                scan[1][_DUE] = deadline  # the last scan before the 7-day mark
            yield scan
            if tw == "logistics.lost_or_damaged" and "lost" not in o.extra:
                kind = "lost" if o.variant % 2 else "damaged"
                o.extra["lost"] = kind
                yield self._logi(o, t + 600, "exception", tracking, kind=kind, detail=kind)
                if kind == "lost":  # the shop sends a replacement parcel
                    tracking = f"{tracking}R"
                    yield self._logi(o, t + r.uniform(1, 4) * HOUR, "shipped", tracking)
            t += gap
        return tracking

    def _failed_attempt(
        self, o: _Order, ofd: float, tracking: str
    ) -> Generator[Step, None, tuple[float, float]]:
        """The first attempt fails at the door; the courier comes back the next day.

        Returns the new out-for-delivery and delivery times."""
        r = self.rng
        tw = o.twist
        yield self._logi(o, ofd, "out_for_delivery", tracking)
        kind = "rejected"
        if tw == "customer.unreachable":
            kind = ("address_unreachable", "phone_unreachable")[o.variant % 2]
        yield self._logi(o, ofd + r.uniform(1, 3) * HOUR, "exception", tracking, kind=kind)
        if tw == "customer.unreachable":
            t_fix = ofd + 4 * HOUR
            fixed = self._ev(
                "order.address_changed",
                t_fix,
                "oms",
                o.customer.cn,
                order_id=o.order_id,
                shipping_address=o.customer.address,
            )
            yield t_fix, fixed
        ofd += DAY
        delivered = ofd + r.uniform(1, 4) * HOUR
        return ofd, delivered

    def _delivery(
        self, o: _Order, ofd: float, delivered: float, tracking: str, status: str, cod: bool
    ) -> Life:
        """Delivered, paid at the door for cash on delivery, then completed (sometimes
        refunded after)."""
        r = self.rng
        yield self._logi(o, ofd, "out_for_delivery", tracking)
        yield self._logi(o, delivered, "delivered", tracking)
        t = delivered
        if cod:  # cash on delivery: the courier's terminal reports the payment
            pid = f"PAY{o.n:09d}0"
            t += r.uniform(60, 600)
            yield self._payment(o, t, True, pid)
            t += r.uniform(20, 90)
            yield self._status(o, t, "paid", "pending_payment")
            status = "paid"
        t += r.uniform(60, 1800)
        yield self._status(o, t, "delivered", status)
        if r.random() < 0.7:
            t += r.uniform(DAY, 3 * DAY)
            yield self._status(o, t, "completed", "delivered")
            if r.random() < 0.02 and not cod:
                t += r.uniform(HOUR, 2 * DAY)
                yield self._refund(o, t, f"PAY{o.n:09d}0")
                yield self._status(o, t + 30, "refunded", "completed")

    def _snapshots(self) -> Life:
        """Every 30 minutes, wms and erp report each sku's stock; they agree unless drifting."""
        r, start = self.rng, self.cfg.start
        for rnd in range(self.rounds):
            base = start + rnd * SNAPSHOT_EVERY
            batch: list[tuple[float, int, str, str, bool]] = []
            for sku in self.skus:
                for wh in WAREHOUSES:
                    t = base + r.uniform(0, 120)
                    batch.append((t, len(batch), sku, wh, False))
                    batch.append((t + r.uniform(5, 90), len(batch), sku, wh, True))
            batch.sort()
            # erp syncs from wms: both report the stock as of the wms count
            seen: dict[tuple[str, str], int] = {}
            for t, _, sku, wh, erp in batch:
                available = seen.pop((sku, wh)) if erp else self.stock[(sku, wh)]
                if not erp:
                    seen[(sku, wh)] = available
                off = self.drifts.get((sku, wh, rnd)) if erp else None
                if off:
                    available += max(10, available * off // 100)
                fields = {"sku": sku, "warehouse_id": wh, "available": available}
                fields["on_hand"] = available + 12
                yield t, self._ev("inventory.snapshot", t, "erp" if erp else "wms", False, **fields)

    def _blacklist_noise(self) -> Life:
        """A few entries no healthy customer matches, and one removal: the risk team at work."""
        t = self.cfg.start + 30
        for k, (kind, value) in enumerate(
            (
                ("customer_id", "C-FRAUD-0001"),
                ("phone", "+86 170 0000 0001"),
                ("address", "CN|广东|深圳|宝安区|福永街道仓库9号"),
                ("customer_id", "C-FRAUD-0002"),
            )
        ):
            yield t + k, self._ev("blacklist.added", t + k, "risk", False, kind=kind, value=value)
        t += HOUR
        yield (
            t,
            self._ev(
                "blacklist.removed", t, "risk", False, kind="customer_id", value="C-FRAUD-0002"
            ),
        )
