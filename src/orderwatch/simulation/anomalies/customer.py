"""Customer-data anomalies: an address or phone that cannot be delivered to or called, fixed by
customer service in half the cases. (A remark with an attention keyword is planned in
``traffic.py``; an unreachable customer bends a journey: a hook in ``journeys.py``.)"""

from __future__ import annotations

from orderwatch.simulation.journeys import Journeys
from orderwatch.simulation.people import _Customer, _Order
from orderwatch.simulation.world import MINUTE, Life


class CustomerAnomalies(Journeys):
    """``customer.invalid_address`` / ``customer.invalid_phone``."""

    @staticmethod
    def _broken_address(addr: dict[str, str], variant: int) -> dict[str, str]:
        broken = dict(addr)
        if variant % 3 == 0:
            broken["line1"] = broken["line1"][:3]  # "中山路" / "12 " : too short to deliver
        elif variant % 3 == 1:
            broken["city"] = " "
        elif addr["country"] == "CN":
            broken["postal_code"] = "2000"
        else:
            broken.pop("province")
        return broken

    @staticmethod
    def _broken_phone(c: _Customer, variant: int) -> str:
        digits = "".join(ch for ch in c.phone if ch.isdigit())
        if c.cn:
            return ("12" + digits[-9:]) if variant % 2 else digits[-10:]  # bad prefix / 10 digits
        return digits  # E.164 without the "+"

    def _contact_fixed_or_not(self, o: _Order) -> Life:
        """Broken contact data: fixed after payment (even variants), or shipped as is."""
        r, c = self.rng, o.customer
        paid = yield from self._checkout(o)
        assert paid is not None
        if o.variant % 2 == 0:  # customer service reaches the customer and fixes it
            t = paid[0] + r.uniform(5, 30) * MINUTE
            fixed = self._ev(
                "order.address_changed",
                t,
                "oms",
                c.cn,
                order_id=o.order_id,
                shipping_address=c.address,
            )
            yield t, fixed
            yield from self._fulfil(o, t, paid[1])
        else:
            yield from self._fulfil(o, *paid)
