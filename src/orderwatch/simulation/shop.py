"""The shop a run simulates: its random source, catalog, stock, customers, ids, and event builders.

Every part of the simulator (healthy journeys, each family of anomalies, the plan) builds on this
one state. All randomness comes from ``rng``, consumed in a deterministic order, so the same seed
gives the same bytes.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

from orderwatch.simulation.config import Expected, SimConfig
from orderwatch.simulation.dating import backdated, strip
from orderwatch.simulation.people import _Customer, _identity, _Order
from orderwatch.simulation.world import (
    _CN_HUBS,
    _FAIL_REASONS,
    _FRESH,
    _INTL_HUBS,
    _METHODS,
    _PRICES,
    _REMARKS,
    DAY,
    HOUR,
    SNAPSHOT_EVERY,
    WAREHOUSES,
    Event,
    Life,
    Step,
    _money,
    _stamp,
)


class Shop:
    """The state a run plans and emits from, and the builders of its events."""

    def __init__(self, config: SimConfig) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.expected: list[Expected] = []
        self.outages: set[float] = set()
        self.events_emitted = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._eid = itertools.count(1)
        self._order_no = itertools.count(1)
        self._fresh = itertools.count(_FRESH)
        self._pool: dict[int, _Customer] = {}
        self._pool_size = max(20, config.orders // 3)
        n_skus = min(400, max(5, config.orders // 20))
        self.skus = [f"SKU-{i:05d}" for i in range(1, n_skus + 1)]
        self.prices = [self.rng.choice(_PRICES) for _ in self.skus]
        self.stock = {(s, w): self.rng.randint(300, 3000) for s in self.skus for w in WAREHOUSES}
        self.rounds = max(3, math.ceil(config.duration / SNAPSHOT_EVERY))
        #: (sku, warehouse, round) -> how far erp is off in that round
        self.drifts: dict[tuple[str, str, int], int] = {}
        self._arrivals: list[tuple[float, int, Callable[[], Iterator[Step]]]] = []

    def _arrive(self, at: float, make: Callable[[], Iterator[Step]]) -> None:
        self._arrivals.append((at, len(self._arrivals), make))

    def _pool_customer(self, i: int) -> _Customer:
        c = self._pool.get(i)
        if c is None:
            age = (30 + (i * 37) % 900) * DAY
            c = self._pool[i] = _identity(i, self.cfg.start - age)
        return c

    def _fresh_customer(
        self, at: float, new_account: bool = False, cn: bool | None = None
    ) -> _Customer:
        """A customer made for one anomaly; ``cn`` pins the country so phones stay valid."""
        age = self.rng.uniform(HOUR, 3 * DAY) if new_account else self.rng.uniform(60, 900) * DAY
        while True:
            c = _identity(next(self._fresh), at - age)
            if cn is None or c.cn == cn:
                return c

    def _new_order(self, at: float, c: _Customer, **kw: Any) -> _Order:
        r = self.rng
        n = next(self._order_no)
        lines = 1 if r.random() < 0.6 else (2 if r.random() < 0.75 else 3)
        items = []
        for idx in sorted({int(len(self.skus) * r.random() ** 2) for _ in range(lines)}):
            qty = 1 if r.random() < 0.8 else r.randint(2, 5)
            items.append((self.skus[idx], qty, self.prices[idx]))
        order = _Order(
            n=n,
            order_id=f"SO{self.cfg.seed % 10000:04d}{n:08d}",
            at=at,
            customer=c,
            address=c.address,
            items=items,
            remark=r.choice(_REMARKS) if r.random() < 0.1 else None,
            promise=r.random() < 0.3,
            fail_first=n % 20 == 7,  # evenly spread: no 5-minute window ever looks like an outage
        )
        if order.fail_first and r.random() < 0.3:
            order.cancel = "unpaid"  # the customer gives up after a declined card
        elif r.random() < 0.03:
            order.cancel = r.choice(("unpaid", "paid"))
        for k, v in kw.items():
            setattr(order, k, v)
        return order

    def _expect(self, rule_id: str, subject: str, cause: str | None = None) -> None:
        self.expected.append(Expected(rule_id, subject, cause or rule_id))

    def _wrap(self, make: Callable[[], Life]) -> Callable[[], Iterator[Step]]:
        """How an anomaly's lifecycle is emitted: backdated in the demo (``dating.backdated``)."""
        if self.cfg.demo:
            return lambda: backdated(make(), self.cfg.demo_lead)
        return lambda: strip(make())

    # --- event builders ------------------------------------------------------------------

    def _ev(self, type_: str, t: float, source: str, east8: bool, **fields: Any) -> Event:
        return {
            "event_id": f"evt-{self.cfg.seed}-{next(self._eid):09d}",
            "type": type_,
            "occurred_at": _stamp(t, east8),
            "source": source,
            **fields,
        }

    def _status(self, o: _Order, t: float, status: str, previous: str | None) -> Step:
        fields: dict[str, Any] = {"order_id": o.order_id, "status": status}
        if previous is not None:
            fields["previous_status"] = previous
        return t, self._ev("order.status_changed", t, "oms", o.customer.cn, **fields)

    def _created(self, o: _Order, t: float, promised_by: float | None) -> Step:
        c = o.customer
        customer = {
            "customer_id": c.customer_id,
            "account_created_at": _stamp(c.account_created_at),
            "phone": c.phone,
            "email": c.email,
        }
        ev = self._ev(
            "order.created",
            t,
            "oms",
            c.cn,
            order_id=o.order_id,
            customer=customer,
            shipping_address=o.address,
            items=[{"sku": s, "quantity": q, "unit_price": _money(p)} for s, q, p in o.items],
            total_amount=_money(o.total),
            currency=c.currency,
            channel="app" if o.n % 3 else "web",
        )
        if o.remark:
            ev["remark"] = o.remark
        if promised_by is not None:
            ev["promised_delivery_by"] = _stamp(promised_by, c.cn)
        return t, ev

    def _payment(
        self, o: _Order, t: float, ok: bool, pid: str, cents: int | None = None, cur: str = ""
    ) -> Step:
        c = o.customer
        fields: dict[str, Any] = {
            "order_id": o.order_id,
            "payment_id": pid,
            "amount": _money(o.total if cents is None else cents),
            "currency": cur or c.currency,
        }
        if ok:
            fields["method"] = _METHODS[o.n % len(_METHODS)] if c.cn else "card"
            return t, self._ev("payment.succeeded", t, "pay-gateway", c.cn, **fields)
        fields["reason_code"] = _FAIL_REASONS[o.n % len(_FAIL_REASONS)]
        return t, self._ev("payment.failed", t, "pay-gateway", c.cn, **fields)

    def _refund(self, o: _Order, t: float, pid: str) -> Step:
        fields = {
            "order_id": o.order_id,
            "payment_id": pid,
            "refund_id": f"RF{pid[3:]}",
            "amount": _money(o.total),
            "currency": o.customer.currency,
        }
        return t, self._ev("payment.refunded", t, "pay-gateway", o.customer.cn, **fields)

    def _stock_ev(self, o: _Order, t: float, type_: str, sku: str, qty: int, **kw: Any) -> Step:
        fields = {"sku": sku, "warehouse_id": o.customer.warehouse, "quantity": qty, **kw}
        return t, self._ev(type_, t, "wms", False, order_id=o.order_id, **fields)

    def _take(self, o: _Order, sku: str, qty: int) -> int:
        """Reserve stock; the warehouse restocks before a line would go below zero."""
        key = (sku, o.customer.warehouse)
        if self.stock[key] < qty + 10:
            self.stock[key] += 1000 + qty
        self.stock[key] -= qty
        return self.stock[key]

    def _logi(self, o: _Order, t: float, what: str, tracking: str, **kw: Any) -> Step:
        carrier = o.extra["carrier"]
        return t, self._ev(
            f"logistics.{what}",
            t,
            carrier,
            False,
            order_id=o.order_id,
            tracking_no=tracking,
            carrier=carrier,
            **kw,
        )

    def _scan(self, o: _Order, t: float, tracking: str) -> Step:
        hubs = _CN_HUBS if o.customer.cn else _INTL_HUBS
        hub = hubs[self.rng.randrange(len(hubs))]
        return self._logi(
            o, t, "scanned", tracking, location=hub, detail="到达" if o.customer.cn else "arrived"
        )
