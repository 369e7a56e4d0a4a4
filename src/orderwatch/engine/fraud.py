"""Fraud windows over orders that share an address, a phone or a (new) customer account.

Each is a sliding event-time window kept in its own shard (keyed by address hash, phone hash or
customer id), so a hot key costs only its own entries. When a window satisfies the rule every order
in it is flagged, and so is each later order that keeps the window satisfied; each order once.

v2: a window does not raise on its own shard. It derives a flag that the order's shard applies
(``derived.py``): the exception is the order's, where an operator's command and inhibition find it.
The window remembers which orders it flagged (in ``done``), so each is sent once.
"""

from __future__ import annotations

import bisect
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from orderwatch.engine import derived
from orderwatch.engine.catalog import format_duration
from orderwatch.engine.state import ADDRESS, CUSTOMER, PHONE, OrderShard, WindowEntry, WindowShard
from orderwatch.events.inbound import InboundEvent, OrderCreated, epoch_seconds
from orderwatch.normalize import mask_phone, normalize_address

if TYPE_CHECKING:
    from orderwatch.engine.core import Engine

CLUSTER = "fraud.address_cluster"
BURST = "fraud.new_account_burst"
SHARED = "fraud.shared_phone"
_RULE = {ADDRESS: CLUSTER, PHONE: SHARED, CUSTOMER: BURST}
#: fields of a window entry ``[at, order_id, customer_id, event_id]``
_AT = itemgetter(0)
_ORDER_ID = itemgetter(1)


def admits(ctx: Engine, key: str, ev: InboundEvent) -> bool:
    """Whether the event enters the window kept under ``key``.

    The engine asks before creating a window shard: an order of an established account or of a
    blank address would only leave an empty window behind, one per order.
    """
    if type(ev) is derived.Mark:  # type: ignore[comparison-overlap]
        return True  # v2: a customer's refunds and rejections (``behaviour.py``)
    if not isinstance(ev, OrderCreated):
        return False
    rule_id = _RULE[key[:2]]
    if not ctx.enabled(rule_id):
        return False
    if rule_id == BURST:
        # ``timestamp()`` exactly, without its call of pydantic's ``TzInfo.utcoffset``
        age = ev.occurred_ts - epoch_seconds(ev.customer.account_created_at)
        return bool(age < ctx.params(rule_id).max_account_age)
    if rule_id == CLUSTER:
        # no street: blank addresses are customer.invalid_address, not one place (the street is
        # the last of the normalized form's five parts)
        return not normalize_address(ev.shipping_address).endswith("|")
    return True


def apply(ctx: Engine, s: WindowShard, ev: InboundEvent, now: float) -> None:
    if not admits(ctx, s.key, ev):
        return
    assert isinstance(ev, OrderCreated)
    rule_id = _RULE[s.key[:2]]
    params = ctx.params(rule_id)
    at = ev.occurred_ts
    if rule_id == BURST:
        min_orders, min_customers = params.min_orders, 1
    elif rule_id == CLUSTER:
        min_orders, min_customers = params.min_orders, params.min_customers
    else:
        min_orders, min_customers = params.min_customers, params.min_customers
    entry = (at, ev.order_id, ev.customer.customer_id, ev.event_id)
    entries = s.entries
    if ev.order_id in map(_ORDER_ID, entries):
        return
    # a new tuple per insert (as ``insort`` would place it): windows are short, and most hold
    # one order, for which a tuple is half the size of a list and not tracked by the collector
    i = bisect.bisect_right(entries, entry)
    entries = (*entries[:i], entry, *entries[i:])
    window = params.window
    if len(entries) > 1:  # a single entry is the newest: nothing to prune
        entries = _prune(entries, window)
    s.entries = entries
    if len(entries) < min_orders:
        return  # no window can hold more orders than there are (most addresses and phones)
    hits = _satisfied(entries, at, window, min_orders, min_customers)
    if hits:
        extra = _extra_values(rule_id, ev)
        for hit in hits:
            _flag(ctx, s, rule_id, hit, max(e[0] for e in hit), now, window, extra)


def _prune(entries: tuple[WindowEntry, ...], window: float) -> tuple[WindowEntry, ...]:
    """Keep two windows of history: enough for stragglers, bounded for hot keys."""
    newest = entries[-1][0]
    cut = bisect.bisect_left(entries, (newest - 2 * window,))
    return entries[cut:] if cut else entries


def _satisfied(
    entries: tuple[WindowEntry, ...], at: float, window: float, min_orders: int, min_customers: int
) -> list[tuple[WindowEntry, ...]]:
    """Every half-open window [start, start + window) that contains ``at`` and meets the rule."""
    first = bisect.bisect_left(entries, at - window, key=_AT)
    hits = []
    for i in range(first, len(entries)):
        start = entries[i][0]
        if start > at:
            break
        if start + window <= at:
            continue
        end = bisect.bisect_left(entries, start + window, key=_AT)
        members = entries[i:end]
        if len(members) >= min_orders and len({e[2] for e in members}) >= min_customers:
            hits.append(members)
    return hits


def _extra_values(rule_id: str, ev: OrderCreated) -> dict[str, Any]:
    if rule_id == SHARED:
        return {"phone": mask_phone(ev.shipping_address.phone)}
    if rule_id == BURST:
        return {"customer_id": ev.customer.customer_id}
    return {}


def _flag(
    ctx: Engine,
    s: WindowShard,
    rule_id: str,
    members: tuple[WindowEntry, ...],
    became: float,
    now: float,
    window: float,
    extra: dict[str, Any],
) -> None:
    values: dict[str, Any] = {
        "orders_in_window": len(members),
        "customers_in_window": len({e[2] for e in members}),
        "window": format_duration(window),
        "order_ids": ", ".join(e[1] for e in members[:20]),
        **extra,
    }
    if s.key[:2] == ADDRESS:
        values["address_hash"] = s.key[2:]
    eids = [e[3] for e in members[:20]]
    for at, order_id, _customer, eid in members:
        sent = f"{rule_id}|{order_id}"
        if s.done is not None and sent in s.done:
            continue
        if s.done is None:
            s.done = set()
        s.done.add(sent)
        own = eids if eid in eids else [*eids, eid]
        ctx.flag(derived.flag(rule_id, order_id, max(at, became), now, own, values))


def apply_flag(ctx: Engine, s: OrderShard, flag: derived.Flag, now: float) -> None:
    """On the order's shard: raise what a window decided (once per rule and order)."""
    ctx.life.raise_(
        s,
        flag.rule_id,
        flag.order_id,
        "",
        flag.event_time,
        now,
        list(flag.event_ids),
        dict(flag.values),
        order_id=flag.order_id,
    )


def on_deadline(ctx: Engine, s: WindowShard, name: str, due: float, now: float) -> None:
    """Window shards schedule nothing but their eviction."""
