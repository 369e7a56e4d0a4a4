"""Fraud and behaviour anomalies: orders of a cluster, a shared phone, a new account's burst, a
blacklisted buyer, and a customer's refunds or rejected deliveries over days."""

from __future__ import annotations

from functools import partial

from orderwatch.simulation.journeys import Journeys
from orderwatch.simulation.people import _Order
from orderwatch.simulation.world import DAY, HOUR, MINUTE, Life


class FraudAnomalies(Journeys):
    """``fraud.*`` and ``logistics.repeated_rejections`` injectors."""

    def _inject_group(self, rule: str, at: float) -> None:
        r = self.rng
        orders: list[_Order] = []
        if rule == "fraud.address_cluster":
            # five orders from three accounts to one drop address within a few hours
            people = [self._fresh_customer(at, cn=True) for _ in range(3)]
            drop = self._fresh_customer(at, cn=True).address
            for k, c in enumerate([*people, people[0], people[1]]):
                t = at + k * r.uniform(10, 50) * MINUTE
                addr = {**drop, "name": c.address["name"], "phone": c.phone}
                orders.append(self._new_order(t, c, address=addr))
        elif rule == "fraud.shared_phone":
            phone = self._fresh_customer(at, cn=True).phone
            for k in range(3):
                t = at + k * r.uniform(20, 120) * MINUTE
                c = self._fresh_customer(t, cn=True)
                orders.append(self._new_order(t, c, address={**c.address, "phone": phone}))
        else:  # new_account_burst: a young account places five orders within the hour
            c = self._fresh_customer(at, new_account=True)
            for k in range(5):
                orders.append(self._new_order(at + k * r.uniform(5, 11) * MINUTE, c))
        for o in orders:
            o.cancel, o.fail_first = None, False
            self._expect(rule, o.order_id)
            self._arrive(o.at, partial(self._order, o))

    def _inject_behaviour(self, rule: str, at: float) -> None:
        """v2 (section 11): one customer's orders refunded (cancelled after payment) three times
        in a day and a half, or two deliveries rejected eight days apart; spaced so that the
        order judged last (by the time of its refund or rejection) is the last one placed."""
        r = self.rng
        c = self._fresh_customer(at, cn=True)
        refunds = rule == "fraud.frequent_refunds"
        count, gap = (3, 12 * HOUR) if refunds else (2, 8 * DAY)
        for k in range(count):
            t = at + k * gap
            if refunds:
                o = self._new_order(t, c, cancel="paid")
            else:
                o = self._new_order(t, c, twist="logistics.rejected", variant=r.randrange(4))
                o.cancel = None
                self._expect("logistics.rejected", o.order_id, rule)
            o.fail_first, o.promise = False, False
            if k == count - 1:
                self._expect(rule, o.order_id)
            self._arrive(o.at, partial(self._order, o))

    def _blacklisted(self, o: _Order) -> Life:
        """fraud.blacklisted: the risk team lists the buyer shortly before the order."""
        r, t0, c = self.rng, o.at, o.customer
        kind = o.extra["blacklist"]
        value = {
            "customer_id": c.customer_id,
            "phone": c.address["phone"],
            "address": "|".join(
                o.address.get(k, "") for k in ("country", "province", "city", "district", "line1")
            ),
        }[kind]
        t = t0 - r.uniform(5, 55) * MINUTE
        yield (
            t,
            self._ev(
                "blacklist.added", t, "risk", False, kind=kind, value=value, reason="chargeback"
            ),
        )
        yield from self._order(o)
