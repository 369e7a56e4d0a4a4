"""Synthetic order traffic with anomalies injected on purpose, for demos, tests and benchmarks.

Healthy lifecycles are timed inside every default threshold of the rule catalog (CONTRACT
section 5), so an exception on a subject that is not in the manifest is a false positive: of the
detector, or of this generator. Each injected anomaly records the (rule_id, subject) pairs it must
produce, including the ones the contract implies as a side effect (a payment for a cancelled
order is also a paid order whose status never reaches ``paid``).

Events come out in event-time order because replay's clock is the largest ``occurred_at`` read so
far: one event from the future would make every deadline before it pass early. Each order's
lifecycle is a generator advanced lazily through a heap, so a simulated day of a million events
holds one suspended frame per order in flight, not every event of the day.

Randomness comes from one seeded ``random.Random`` consumed in heap order, which is itself
deterministic: the same seed gives the same bytes.

The ``Simulator`` is assembled from parts, one per concern:

- ``world.py`` (time units, regions, carriers, keywords), ``people.py`` (customers, orders),
  ``config.py`` (``SimConfig``, ``Expected``, ``parse_mix``);
- ``shop.py``: the run's state, random source and event builders;
- ``journeys.py``: healthy order journeys, stock snapshots and blacklist changes;
- ``anomalies/``: one part per family of injected anomalies (payment, logistics, inventory,
  fraud and behaviour, customer data, order creation);
- ``dating.py``: the demo's dating at emission and the pacing; ``output.py``: file and Kafka;
- this module: the plan of a run (arrivals, which anomaly when) and the event stream.

The names other modules import (``SimConfig``, ``Simulator``, ``write_file``, ``produce``,
``topic_and_key``, ``AGO``, ``TOPICS``...) stay importable from here.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from functools import partial
from typing import Any

from orderwatch.engine.catalog import CONTRACT_RULES
from orderwatch.engine.lifecycle import iso
from orderwatch.simulation.anomalies.customer import CustomerAnomalies
from orderwatch.simulation.anomalies.fraud import FraudAnomalies
from orderwatch.simulation.anomalies.inventory import InventoryAnomalies
from orderwatch.simulation.anomalies.logistics import LogisticsAnomalies
from orderwatch.simulation.anomalies.orders import OrderAnomalies
from orderwatch.simulation.anomalies.payment import PaymentAnomalies
from orderwatch.simulation.config import Expected, SimConfig, parse_mix
from orderwatch.simulation.dating import _finish
from orderwatch.simulation.output import TOPICS, manifest_path, produce, topic_and_key, write_file
from orderwatch.simulation.people import _identity, _Order
from orderwatch.simulation.world import (
    _ATTENTION,
    _HOURLY,
    AGO,
    DAY,
    DEFAULT_START,
    HOUR,
    Event,
    Life,
    Step,
)


class Simulator(
    PaymentAnomalies,
    LogisticsAnomalies,
    InventoryAnomalies,
    FraudAnomalies,
    CustomerAnomalies,
    OrderAnomalies,
):
    """Plans a run up front (arrivals, anomalies, outages), then yields its events lazily."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self._plan()

    # --- planning --------------------------------------------------------------------------

    def _arrival_time(self) -> float:
        """Rejection-sample the hour-of-day profile (in China time) over the run."""
        cfg, r = self.cfg, self.rng
        peak = max(_HOURLY)
        while True:
            t = cfg.start + r.random() * cfg.duration
            hour = int(((t + 8 * HOUR) % DAY) // HOUR)
            if r.random() * peak < _HOURLY[hour]:
                return t

    def _plan(self) -> None:
        cfg, r = self.cfg, self.rng
        self._arrive(cfg.start, self._snapshots)
        self._arrive(cfg.start, self._blacklist_noise)
        for rule_id, at in self._anomaly_plan():
            self._inject(rule_id, at)
        for _ in range(cfg.orders):
            at = self._arrival_time()
            if r.random() < 0.08:  # a brand-new account placing its first order
                c = _identity(next(self._fresh), at - r.uniform(HOUR, 6 * DAY))
            else:
                c = self._pool_customer(r.randrange(self._pool_size))
            o = self._new_order(at, c)
            self._arrive(at, partial(self._order, o))

    def _anomaly_plan(self) -> list[tuple[str, float]]:
        cfg, r = self.cfg, self.rng
        mix = dict(cfg.mix) if cfg.mix is not None else dict.fromkeys(CONTRACT_RULES, 1.0)
        mix = {k: v for k, v in mix.items() if v > 0}
        count = cfg.anomalies if cfg.anomalies is not None else round(cfg.orders * cfg.anomaly_rate)
        if not mix or count <= 0:
            return []
        # smooth weighted round-robin: every rule of the mix appears once count allows it
        total = sum(mix.values())
        credit = dict.fromkeys(mix, 0.0)
        rules = []
        for _ in range(count):
            for k in credit:
                credit[k] += mix[k]
            pick = max(credit, key=lambda k: (credit[k], k))
            credit[pick] -= total
            rules.append(pick)
        r.shuffle(rules)
        return [(rule, cfg.start + r.uniform(0.05, 0.9) * cfg.duration) for rule in rules]

    def _inject(self, rule: str, at: float) -> None:
        """Plan one anomaly of ``rule`` at sim time ``at`` and what it must produce."""
        if rule == "payment.success_rate_drop":
            self._inject_outage(at)
            return
        if rule == "order.creation_failure_spike":
            self._inject_creation_spike(rule, at)
            return
        if rule == "order.creation_failed":
            self._inject_creation_failed(rule, at)
            return
        if rule == "inventory.sync_drift":
            self._inject_drift(at)
            return
        if rule == "logistics.orphan":
            self._inject_stray_scan(rule, at)
            return
        if rule in ("fraud.address_cluster", "fraud.shared_phone", "fraud.new_account_burst"):
            self._inject_group(rule, at)
            return
        if rule in ("fraud.frequent_refunds", "logistics.repeated_rejections"):
            self._inject_behaviour(rule, at)
            return
        self._inject_twist(rule, at)

    def _inject_twist(self, rule: str, at: float) -> None:
        """Any other rule: one order of a fresh customer whose lifecycle carries the ``twist``."""
        r = self.rng
        demo = self.cfg.demo
        fresh = self._fresh_customer
        c = fresh(at)
        o = self._new_order(at, c, twist=rule, variant=r.randrange(4), cancel=None)
        o.fail_first = False
        o.promise = rule == "logistics.delivery_delayed" and o.variant % 2 == 1 and not demo
        if rule in ("payment.after_cancel", "payment.orphan"):
            self._expect("payment.paid_not_updated", o.order_id, rule)
        elif rule == "customer.remark_attention":
            o.remark = r.choice(_ATTENTION)
        elif rule == "fraud.abnormal_quantity":
            sku, _, price = o.items[0]
            o.items[0] = (sku, r.randint(25, 120), price)
        elif rule == "fraud.blacklisted":
            kind = ("customer_id", "phone", "address")[o.variant % 3]
            o.extra["blacklist"] = kind
        elif rule == "customer.invalid_address":
            o.address = self._broken_address(c.address, o.variant)
        elif rule == "customer.invalid_phone":
            o.address = {**c.address, "phone": self._broken_phone(c, o.variant)}
        self._expect(rule, o.order_id)
        start = at - HOUR if rule == "fraud.blacklisted" else at
        self._arrive(start, self._wrap(lambda: self._twisted(o)))

    def _twisted(self, o: _Order) -> Life:
        """The lifecycle of an order whose ``twist`` differs from a healthy one before fulfilment
        (the other twists are hooks in the healthy journey, ``journeys.py``)."""
        tw = o.twist
        if tw == "fraud.blacklisted":
            return self._blacklisted(o)
        if tw == "payment.failed_unpaid":
            return self._failed_unpaid(o)
        if tw == "payment.after_cancel":
            return self._paid_after_cancel(o)
        if tw == "payment.orphan":
            return self._paid_before_order(o)
        if tw == "order.shipped_unpaid":
            return self._shipped_unpaid(o)
        if tw in ("customer.invalid_address", "customer.invalid_phone"):
            return self._contact_fixed_or_not(o)
        if tw in ("payment.paid_not_updated", "payment.duplicate", "payment.amount_mismatch"):
            return self._payment_twist(o)
        if tw == "logistics.not_shipped":
            return self._paid_then(o, "not_shipped")
        return self._order(o)

    # --- the event stream ----------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        """Every event of the run in event-time order (demo events carry ``AGO``)."""
        heap: list[tuple[float, int, Event, Iterator[Step]]] = []
        seq = itertools.count()
        arrivals = sorted(self._arrivals, key=lambda a: (a[0], a[1]))
        self._arrivals = []
        i, n = 0, len(arrivals)
        push = heapq.heappush
        while True:
            if i < n and (not heap or arrivals[i][0] <= heap[0][0]):
                life = arrivals[i][2]()
                i += 1
                step = next(life, None)
                if step is not None:
                    push(heap, (step[0], next(seq), step[1], life))
                continue
            if not heap:
                break
            t, _, ev, life = heapq.heappop(heap)
            if self.first_at is None:
                self.first_at = t
            self.last_at = t
            self.events_emitted += 1
            yield ev
            step = next(life, None)
            if step is not None:
                push(heap, (step[0], next(seq), step[1], life))

    def manifest(self) -> dict[str, Any]:
        """What the run must produce; valid once ``events()`` is exhausted.

        ``until`` is the clock to replay to: a week past the last event lets every injected
        deadline pass, and healthy lifecycles end with nothing pending, so it adds nothing else.
        """
        end = self.last_at if self.last_at is not None else self.cfg.start
        return {
            "seed": self.cfg.seed,
            "orders": self.cfg.orders,
            "events": self.events_emitted,
            "demo": self.cfg.demo,
            "start": iso(self.first_at if self.first_at is not None else self.cfg.start),
            "end": iso(end),
            "until": iso(end + 8 * DAY),
            "expected": [
                {"rule_id": e.rule_id, "subject": e.subject, "cause": e.cause}
                for e in sorted(set(self.expected))
            ],
        }


__all__ = [
    "AGO",
    "DEFAULT_START",
    "TOPICS",
    "Event",
    "Expected",
    "SimConfig",
    "Simulator",
    "Step",
    "_finish",
    "manifest_path",
    "parse_mix",
    "produce",
    "topic_and_key",
    "write_file",
]
