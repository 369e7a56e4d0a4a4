"""Blacklist suggestions from behaviour (CONTRACT section 11): refunds and rejections.

Both rules count, per customer, the distinct orders whose *first* refund (or first rejected
delivery) happened within D before the one being judged. What is counted is read on the order's
shard (a refund names only its order), while the count is the customer's, so it lives on the
customer's shard ``c:<customer_id>`` (the shard of ``fraud.new_account_burst``'s window), and the
exception, as every order rule's, on the order's shard. Two hops, the same in replay and live:

1. the order's shard remembers its first refund (rejection) and, once it also knows the order's
   customer (its ``order.created``, which may be read later), derives a ``Mark`` for the customer's
   shard (``derived.mark``), once per order and rule;
2. the customer's shard adds the mark to its list (an order already there is a re-delivery and
   counts once), counts the marks in ``(t - D, t]`` for the mark's own time ``t`` and, at N or more,
   derives a ``Flag`` for the order's shard, which raises there (``fraud.apply_flag``).

Replay applies both derived records at once, inline; the live worker sends each to the partition
that owns its shard through the shard topic (``Engine.forward``), as it does fraud window flags.
Each order is flagged at most once, judged by the marks whose time is in ``(t - D, t]`` for its
own ``t``: a mark read late (live, marks come from several partitions in any order) is counted
for the later marks not yet flagged, so the outcome does not depend on the order of reading.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from orderwatch.engine import derived
from orderwatch.engine.catalog import format_duration
from orderwatch.engine.state import OrderShard, WindowShard
from orderwatch.events.inbound import (
    InboundEvent,
    LogisticsException,
    OrderCreated,
    OrderStatusChanged,
    PaymentRefunded,
)

if TYPE_CHECKING:
    from orderwatch.engine.core import Engine

REFUNDS = "fraud.frequent_refunds"
REJECTIONS = "logistics.repeated_rejections"
#: the events that may start or complete a mark: one set lookup for every other event
WATCHED: frozenset[type] = frozenset(
    {PaymentRefunded, OrderStatusChanged, LogisticsException, OrderCreated}
)
#: the one status of those that ``observe`` reads (``orders.apply`` calls it for no other: a
#: status change is the most frequent order event)
REFUNDED = "refunded"
#: timer on a customer's shard that keeps it (and its marks) until its last mark leaves the window
KEEP = "bhv|keep"
#: order_ids listed in evidence at most
_LISTED = 20


def observe(ctx: Engine, s: OrderShard, ev: InboundEvent, now: float) -> None:
    """On the order's shard, after its own rules: note a first refund, rejection or customer."""
    kind = type(ev)
    if kind is PaymentRefunded or (kind is OrderStatusChanged and ev.status == REFUNDED):  # type: ignore[union-attr]
        if s.first_refund is None:
            s.first_refund = [ev.occurred_ts, ev.event_id, False]
    elif kind is LogisticsException and ev.kind == "rejected":  # type: ignore[union-attr]
        if s.first_reject is None:
            s.first_reject = [ev.occurred_ts, ev.event_id, False]
    elif kind is OrderCreated and s.customer_id is None:
        s.customer_id = ev.customer.customer_id  # type: ignore[union-attr]
    else:
        return
    customer = s.customer_id
    if customer is None:
        return  # counted when its order.created is read
    for rule_id, first in ((REFUNDS, s.first_refund), (REJECTIONS, s.first_reject)):
        if first is None or first[2] or not ctx.enabled(rule_id):
            continue
        first[2] = True
        ctx.derive(derived.mark(rule_id, s.order_id, customer, first[0], first[1], now))


def apply_mark(ctx: Engine, s: WindowShard, mark: derived.Mark, now: float) -> None:
    """On the customer's shard: count the mark and flag its order at N or more within D."""
    if not ctx.enabled(mark.rule_id):
        return
    params = ctx.params(mark.rule_id)
    window: float = params.window
    if s.marks is None:
        s.marks = {}
    marks = s.marks.setdefault(mark.rule_id, [])
    if any(m[1] == mark.order_id for m in marks):
        return  # the same order's mark read again: counted once, judged once
    entry = [mark.at, mark.order_id, mark.source_event_id]
    bisect.insort(marks, entry)
    newest = marks[-1][0]
    cut = bisect.bisect_left(marks, [newest - 2 * window])
    if cut:  # two windows of history: enough for marks read late, bounded for any customer
        del marks[:cut]
    ctx.schedule(s, KEEP, newest + window)
    # judge the new mark, and every later one not flagged yet: a mark read late (live, marks
    # come from other partitions in any order) counts for them as it would have in time order,
    # so the outcome depends on the marks, not on the order they were read in
    for m in marks:
        if m[0] < mark.at or (s.done and f"{mark.rule_id}|{m[1]}" in s.done):
            continue
        t = m[0]
        inside = [x for x in marks if t - window < x[0] <= t]
        if len(inside) < params.min_orders:
            continue
        if s.done is None:
            s.done = set()
        s.done.add(f"{mark.rule_id}|{m[1]}")
        values: dict[str, Any] = {
            "customer_id": mark.customer_id,
            "orders_in_window": len(inside),
            "window": format_duration(window),
            "order_ids": ", ".join(x[1] for x in inside[:_LISTED]),
        }
        eids = [x[2] for x in inside[-_LISTED:]]
        if m[2] not in eids:
            eids.append(m[2])
        ctx.flag(derived.flag(mark.rule_id, m[1], t, now, eids, values))
