"""Payment anomalies: a gateway outage, declines left unpaid, a payment after the cancel or before
the order, a paid status that never arrives, a double payment, an amount that does not match."""

from __future__ import annotations

from functools import partial

from orderwatch.engine.lifecycle import iso
from orderwatch.simulation.journeys import Journeys
from orderwatch.simulation.people import _Order
from orderwatch.simulation.world import _DUE, AGO, HOUR, MINUTE, WINDOW, Life, window_start


class PaymentAnomalies(Journeys):
    """``payment.*`` injectors and the lifecycles they plan."""

    def _inject_outage(self, at: float) -> None:
        """A gateway outage: every attempt in one window fails, and 25 orders try in it."""
        rule = "payment.success_rate_drop"
        r = self.rng
        if self.cfg.demo:
            self._expect(rule, "<the window at emission>")
            self._arrive(at, lambda: self._demo_outage(at))
            return
        w = window_start(at)
        while w in self.outages:
            w += 2 * WINDOW
        self.outages.add(w)
        self._expect(rule, iso(w))
        for _ in range(25):
            t = w - r.uniform(30, 240)
            o = self._new_order(t, self._fresh_customer(t), cancel=None)
            o.fail_first = False
            o.extra["pay_at"] = w + r.uniform(5, WINDOW - 20)
            self._arrive(t, partial(self._order, o))

    def _demo_outage(self, at: float) -> Life:
        """25 declined attempts now, in the current window, which closes within five minutes."""
        r = self.rng
        for _ in range(25):
            o = self._new_order(at, self._fresh_customer(at), cancel=None)
            _, created = self._created(o, at, None)
            created[AGO] = 30.0
            yield at, created
            _, failed = self._payment(o, at, False, f"PAY{o.n:09d}0")
            failed[AGO] = r.uniform(0, 2)
            yield at, failed

    def _failed_unpaid(self, o: _Order) -> Life:
        """payment.failed_unpaid: declined, never retried, closed after the deadline."""
        r, t0 = self.rng, o.at
        yield self._created(o, t0, None)
        yield self._status(o, t0 + 1, "pending_payment", None)
        t = t0 + r.uniform(30, 300)
        failed = self._payment(o, t, False, f"PAY{o.n:09d}0")
        failed[1][_DUE] = t + 30 * MINUTE
        yield failed
        yield self._status(o, t + r.uniform(1, 3) * HOUR, "closed", "pending_payment")

    def _paid_after_cancel(self, o: _Order) -> Life:
        """payment.after_cancel: the customer paid in a tab left open after the cancel."""
        r, t0 = self.rng, o.at
        yield self._created(o, t0, None)
        yield self._status(o, t0 + 1, "pending_payment", None)
        t = t0 + r.uniform(300, 1200)
        yield self._status(o, t, "cancelled", "pending_payment")
        t += r.uniform(60, 600)
        pid = f"PAY{o.n:09d}0"
        pay = self._payment(o, t, True, pid)  # the customer paid in a tab left open
        # the demo dates this history into the past (the cancel before the payment, both
        # before now) instead of emitting it at sim time, which runs ahead of the wall clock
        pay[1][_DUE] = t + 10 * MINUTE
        yield pay
        yield self._refund(o, t + r.uniform(20, 60) * MINUTE, pid)

    def _paid_before_order(self, o: _Order) -> Life:
        """payment.orphan: the callback comes before the order it pays for."""
        r, t0 = self.rng, o.at
        # the gateway calls back before the OMS publishes the order (its outbox lagged)
        pid = f"PAY{o.n:09d}0"
        pay = self._payment(o, t0, True, pid)
        pay[1][_DUE] = t0 + 10 * MINUTE
        yield pay
        t = t0 + r.uniform(11, 20) * MINUTE
        yield self._created(o, t, None)
        yield self._status(o, t + 1, "pending_payment", None)
        yield self._status(o, t + r.uniform(5, 30), "paid", "pending_payment")
        yield from self._fulfil(o, t + 60, pid)

    def _payment_twist(self, o: _Order) -> Life:
        r, tw, t0 = self.rng, o.twist, o.at
        yield self._created(o, t0, None)
        yield self._status(o, t0 + 1, "pending_payment", None)
        tries, ts = self._attempts(t0 + r.uniform(20, 480), False)
        pid = ""
        for k, (t, ok) in enumerate(tries):
            pid = f"PAY{o.n:09d}{k}"
            if ok and tw == "payment.amount_mismatch":
                if o.variant % 2:
                    short = min(o.total // 2, r.choice((100, 1000, 5000)))
                    step = self._payment(o, t, True, pid, o.total - short)
                else:
                    other = "USD" if o.customer.currency != "USD" else "EUR"
                    step = self._payment(o, t, True, pid, cur=other)
            else:
                step = self._payment(o, t, ok, pid)
            if ok and tw == "payment.paid_not_updated":
                step[1][_DUE] = t + 10 * MINUTE
            yield step
        t_paid = ts + r.uniform(25, 90)
        if tw == "payment.duplicate":
            # paid twice through two channels; both succeed, nobody refunds yet
            second = ts + r.uniform(10, 20)
            yield self._payment(o, second, True, f"PAY{o.n:09d}9")
            t_paid = second + r.uniform(5, 60)
        elif tw == "payment.paid_not_updated":
            t_paid = ts + r.uniform(11, 25) * MINUTE  # the OMS consumer was stuck
        yield self._status(o, t_paid, "paid", "pending_payment")
        yield from self._fulfil(o, t_paid, pid)
