"""Key indicators (CONTRACT section 11) per tumbling event-time UTC hour, pure like the rules.

Every count is judged per item where the item is, on the order's shard, which sends one
``derived.Contribution`` (kpi, hour, dimension, item, hit) to the shard of that hour,
``g:kpis/<hour start>`` (applied at once in replay, through the shard topic live):

* ``payment_success_rate``: payment events reach their order's shard (``o:``; an orphan payment,
  whose order was never created, makes that shard and is counted as before). Per ``payment_id``
  the shard keeps ``OrderShard.pay_kpi``: the hour of its first event read, the ``method`` of its
  first event that has one, and whether one succeeded; it sends a contribution at the first
  event and again whenever that state improves (a method becomes known, a success after a
  failure): an upgrade of the same item. A later callback after the hour is published changes
  nothing: the hour's shard drops contributions once it has published, and the order's shard
  knows the payment (its hour stays the first event's), so it is never counted in a new hour.
  Two differences from the earlier layout, both at the edges: a payment whose first event is
  read after its hour was published stays in that hour (before, a later event of it in an open
  hour counted it there), and a payment_id that two orders report is one item per hour but is
  counted in each hour their first events fall in (before, once). Finished orders are
  compacted (``orders.compact``) without touching ``pay_kpi``.
* ``on_time_shipment_rate`` / ``on_time_delivery_rate`` are judged on the order's shard, where the
  order is: on time when it ships (is delivered) by its deadline (paid time + the
  ``logistics.not_shipped`` threshold; ``promised_delivery_by``), late when the order's own
  ``logistics.not_shipped`` (``logistics.delivery_delayed``) deadline passes first. Each order is
  judged once per indicator, dimensioned by the warehouse of its first ``inventory.reserved`` and
  the carrier of its ``logistics.shipped``.

An hour's shard holds, per indicator, item -> [dimension, hit]: contributions arrive at least
once, so a second one of an item is merged, never added (hit only goes 0 -> 1, the dimension
only from ``unknown`` to a known value: the result does not depend on delivery order). It
publishes its records once the clock passes the hour's end plus ``GRACE`` (one minute: live,
contributions travel from other partitions), then keeps only ``closed_until`` and drops what
arrives later; a contribution that finds no open shard for an hour whose close has passed is
dropped too (the shard was published and forgotten, or the hour never had anything). So no
shard holds more than an hour's items: a commit writes the hours it touched, a restart reads
what it needs (before, one ``g:kpis`` held every open hour and a day of payments: 7.8 MB at
100,000 orders a day, written whole at every commit that touched it).

A ``g:kpis`` of that earlier layout (windows of several hours, ``payments``) read from a
changelog gets a timer due at once (``KPI_MIGRATE``), so the first sweep that reaches it
migrates it (or the first event waiting in it, whichever comes first): its open windows and
its payments not yet published are sent as contributions to their hours' shards (merged there
with what the orders send: a payment counts once per hour), and it keeps nothing but
``closed_until``. Its published payments (kept a day against late callbacks) are dropped: an
order's shard takes a payment it knew succeeded before the upgrade (``Payment.at``) in that
success's hour, published by then, so its late callback is not counted again (a payment that
only failed before the upgrade and is called back in a later hour within the day would be).

A late timeout needs the rule's deadline: with ``logistics.not_shipped``
(``logistics.delivery_delayed``) disabled only on-time orders are counted.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from orderwatch.engine import derived
from orderwatch.engine.lifecycle import to_datetime
from orderwatch.engine.state import KPIS, KpiShard, OrderShard, Shard, hour_key
from orderwatch.events.inbound import (
    InboundEvent,
    InventoryReserved,
    LogisticsDelivered,
    LogisticsShipped,
    OrderStatusChanged,
    PaymentFailed,
    PaymentSucceeded,
)
from orderwatch.events.kpis import DIMENSION, KpiRecord

if TYPE_CHECKING:
    from orderwatch.engine.core import Engine

HOUR = 3600.0
DAY = 86400.0
GRACE = 60.0
CLOSE = "kpi|"
PAY = "payment_success_rate"
SHIP = "on_time_shipment_rate"
DELIVERY = "on_time_delivery_rate"
UNKNOWN = "unknown"
NOT_SHIPPED = "logistics.not_shipped"
DELIVERY_DELAYED = "logistics.delivery_delayed"
_PAYMENTS: frozenset[type] = frozenset({PaymentSucceeded, PaymentFailed})
#: order events after which an indicator may be judged (one set lookup for the others)
WATCHED: frozenset[type] = frozenset(
    {InventoryReserved, LogisticsShipped, LogisticsDelivered, OrderStatusChanged} | _PAYMENTS
)
_SHIP_DONE, _DELIVERY_DONE = 1, 2
#: ``OrderShard.kpi_done`` once both indicators judged the order
JUDGED = _SHIP_DONE | _DELIVERY_DONE
#: the watched events ``observe`` reads whatever the order's state (a payment, a dimension);
#: the others (a status change, a delivery) judge an order only once it shipped and while an
#: indicator has not judged it (``orders.apply`` calls it for no other)
ALWAYS: frozenset[type] = frozenset({InventoryReserved, LogisticsShipped} | _PAYMENTS)


def hour_of(ts: float) -> float:
    return ts - ts % HOUR


# --- on the order's shard ----------------------------------------------------------------------


def observe(ctx: Engine, s: OrderShard, ev: InboundEvent, now: float) -> None:
    """After the order's own rules: count a payment, note the dimensions, judge what is now on
    time."""
    kind = type(ev)
    if kind in _PAYMENTS:
        _payment(ctx, s, ev, now)  # type: ignore[arg-type]
        return  # judged on the other events only, as before payments were counted here
    if kind is InventoryReserved and s.warehouse_id is None:
        s.warehouse_id = ev.warehouse_id  # type: ignore[union-attr]
    elif kind is LogisticsShipped and s.carrier is None:
        s.carrier = ev.carrier  # type: ignore[union-attr]
    done = s.kpi_done or 0
    if not done & _SHIP_DONE and s.shipped_at is not None:
        paid = _paid_at(s)
        if paid is not None and NOT_SHIPPED in ctx.rules:
            deadline = paid + float(ctx.timeout_limits[NOT_SHIPPED])
            cancelled = s.cancelled_at is not None and s.cancelled_at <= s.shipped_at
            if s.shipped_at <= deadline and not cancelled:
                _send(ctx, s, SHIP, deadline, s.warehouse_id, 1, now)
                done |= _SHIP_DONE
    if (
        not done & _DELIVERY_DONE
        and s.delivered_at is not None
        and s.promised_by is not None
        and s.shipped_at is not None
        and s.delivered_at <= s.promised_by
    ):
        _send(ctx, s, DELIVERY, s.promised_by, s.carrier, 1, now)
        done |= _DELIVERY_DONE
    s.kpi_done = done or None


def _payment(ctx: Engine, s: OrderShard, ev: PaymentSucceeded | PaymentFailed, now: float) -> None:
    """A payment's first event fixes its hour; it is sent then, and again when its state
    improves (a method becomes known, a success after a failure). Nothing else is sent: a
    re-callback changes nothing, and a late one after publication is dropped by its hour."""
    pid = ev.payment_id
    ok = 1 if type(ev) is PaymentSucceeded else 0
    method = getattr(ev, "method", None)
    if method:
        method = sys.intern(method)  # a handful of methods, a reference per payment
    entries = s.pay_kpi or ()
    for i in range(0, len(entries), 4):
        if entries[i] == pid:
            _, start, first, was_ok = entries[i : i + 4]
            # the first method read is kept (an empty one too, as a method it is "unknown")
            if first is not None or not method:
                method = first
            if was_ok:
                ok = 1
            if method is first and ok == was_ok:
                return
            # a new tuple: a shard's tuples are never written into (an atomic step keeps
            # them as they are, ``atomic._copy``)
            s.pay_kpi = (*entries[:i], pid, start, method, ok, *entries[i + 4 :])
            break
    else:
        first_at = ev.occurred_ts
        seen = s.payments.get(pid)
        if seen is not None and seen.at is not None and seen.at < first_at:
            # a success read before the upgrade (the earlier layout counted it on g:kpis): its
            # hour is that one's, published by now, so a late callback is not counted again
            first_at = seen.at
        start = _shared_hour(first_at)
        s.pay_kpi = (*entries, pid, start, method, ok)
    ctx.send_contribution(_payment_record(ctx, pid, start, method or UNKNOWN, ok, now))


#: one float object per hour start, shared by the payments of that hour (24 bytes each else)
_HOURS: dict[float, float] = {}


def _shared_hour(ts: float) -> float:
    start = hour_of(ts)
    shared = _HOURS.get(start)
    if shared is None:
        if len(_HOURS) >= 10_000:
            _HOURS.clear()
        shared = _HOURS[start] = start
    return shared


def _payment_contribution(
    pid: str, start: float, dim: str, hit: int, now: float
) -> derived.Contribution:
    # one id per state of the payment: a re-delivery is the same record, an upgrade is not
    # (waiting for the clock in a shard, it must not replace the first)
    return _contribution(PAY, start, dim, pid, hit, now, f"|{dim}|{hit}")


def _payment_record(
    ctx: Engine, pid: str, start: float, dim: str, hit: int, now: float
) -> derived.Contribution | Counted:
    if ctx.forward:
        return _payment_contribution(pid, start, dim, hit, now)
    return Counted(PAY, start, dim, pid, hit, now)


class Counted:
    """A contribution applied by the engine that made it (replay, not ``Engine.forward``):
    what ``apply_contribution`` and ``Engine._apply`` read of a ``derived.Contribution``,
    without the pydantic record and its ``event_id``, which only the shard topic needs
    (building one cost four times a plain object: measured, 13.6k against 3.5k instructions).
    ``tests/unit/test_engine_shortcuts.py`` runs both in lockstep."""

    __slots__ = ("dimension", "hit", "item", "kpi", "occurred_ts", "window_start")

    def __init__(self, kpi: str, start: float, dim: str, item: str, hit: int, now: float) -> None:
        self.kpi = kpi
        self.window_start = start
        self.dimension = dim
        self.item = item
        self.hit = hit
        self.occurred_ts = now

    @property
    def shard_key(self) -> str:
        """The shard of its hour, ``g:kpis/<hour start>`` (as ``derived.Contribution``'s)."""
        return hour_key(self.window_start)

    @property
    def event_id(self) -> str:
        """The id its record would carry (``_contribution``), made only if read."""
        state = f"|{self.dimension}|{self.hit}" if self.kpi == PAY else ""
        return f"{derived.CONTRIBUTION}|{self.kpi}|{self.item}{state}"


def on_deadline(ctx: Engine, s: OrderShard, name: str, due: float, now: float) -> None:
    """The order's not-shipped or delivery deadline passed first: late."""
    done = s.kpi_done or 0
    if name == NOT_SHIPPED and not done & _SHIP_DONE:
        _send(ctx, s, SHIP, due, s.warehouse_id, 0, now)
        s.kpi_done = done | _SHIP_DONE
    elif (
        name == DELIVERY_DELAYED
        and not done & _DELIVERY_DONE
        and s.promised_by is not None
        and due == s.promised_by
    ):
        _send(ctx, s, DELIVERY, due, s.carrier, 0, now)
        s.kpi_done = done | _DELIVERY_DONE


def _paid_at(s: OrderShard) -> float | None:
    times = [p.at for p in s.payments.values() if p.at is not None and p.event_id is not None]
    if s.paid_status_at is not None:
        times.append(s.paid_status_at)
    return min(times) if times else None


def _send(
    ctx: Engine, s: OrderShard, kpi: str, at: float, dim: str | None, hit: int, now: float
) -> None:
    start, item = hour_of(at), s.order_id
    if ctx.forward:
        ctx.send_contribution(_contribution(kpi, start, dim or UNKNOWN, item, hit, now))
    else:
        ctx.send_contribution(Counted(kpi, start, dim or UNKNOWN, item, hit, now))


def _contribution(
    kpi: str, start: float, dim: str, item: str, hit: int, now: float, state: str = ""
) -> derived.Contribution:
    event_id = f"{derived.CONTRIBUTION}|{kpi}|{item}{state}"
    return derived.contribution(kpi, start, dim, item, hit, now, event_id)


# --- on an hour's shard ------------------------------------------------------------------------


_NEVER = float("-inf")
#: the close timer's name of each hour start (``kpi|<start>``), made once per hour
_CLOSES: dict[float, str] = {}


def apply_contribution(
    ctx: Engine, s: KpiShard, c: derived.Contribution | Counted, now: float
) -> None:
    if s.key == KPIS:
        # one that waited in the earlier layout's shard: that shard moves, this goes on
        migrate(ctx, s, now)
        ctx.send_contribution(c)
        return
    start = c.window_start
    if s.closed_until and start < s.closed_until.get(c.kpi, _NEVER):
        return  # its hour was published already
    # (floats only: an int start, were there one, is written without ".0")
    name = _CLOSES.get(start) if type(start) is float else None
    if name is None:
        name = f"{CLOSE}{start}"
        if type(start) is float:
            if len(_CLOSES) >= 10_000:
                _CLOSES.clear()
            _CLOSES[start] = name
    if name not in s.timers:
        if now > start + HOUR + GRACE:
            return  # the hour's close has passed: published and forgotten, or never counted
        ctx.schedule(s, name, start + HOUR + GRACE)
    window = s.windows.get(c.kpi)
    if window is None:
        window = s.windows[c.kpi] = {}
        window = s.windows[c.kpi]  # the shard's own (``atomic._Tracked`` wraps a new dict)
    item = c.item
    old = window.get(item)
    if old is None:
        window[item] = [c.dimension, c.hit]
    else:
        # at least once: merged, never added; hit 0 -> 1 and unknown -> a dimension only (a
        # new list, never a write into the stored one: an atomic step takes back the shard's
        # dict writes, ``atomic._Tracked``, not writes inside its values)
        dim = c.dimension if old[0] == UNKNOWN else old[0]
        hit = old[1] or c.hit
        if dim != old[0] or hit != old[1]:
            window[item] = [dim, hit]
    ctx.dirty.add(s.key)


def on_close(ctx: Engine, s: Shard, name: str, due: float, now: float) -> None:
    """The clock passed an hour's end (and the grace): publish its records, forget the hour."""
    if not isinstance(s, KpiShard) or not name.startswith(CLOSE):
        return
    if s.key == KPIS:
        migrate(ctx, s, now)  # the earlier layout's shard: its hours go to their own shards
        return
    start = float(name[len(CLOSE) :])
    counts: dict[tuple[str, str], list[int]] = {}
    for kpi in (SHIP, DELIVERY, PAY):
        for dim, hit in s.windows.pop(kpi, {}).values():
            c = counts.setdefault((kpi, dim), [0, 0])
            c[0] += hit
            c[1] += 1
        s.closed_until[kpi] = max(s.closed_until.get(kpi, float("-inf")), start + HOUR)
    for (kpi, dim), (num, den) in sorted(counts.items()):
        fields: dict[str, Any] = {"method": None, "warehouse_id": None, "carrier": None}
        fields[DIMENSION[kpi]] = dim
        ctx.kpi_records.append(
            KpiRecord.model_construct(
                kpi=kpi,  # type: ignore[arg-type]
                window_start=to_datetime(start),
                window_end=to_datetime(start + HOUR),
                numerator=num,
                denominator=den,
                **fields,
            )
        )
    ctx.dirty.add(s.key)


# --- the earlier layout: one ``g:kpis`` with every open hour and a day of payments -------------


def apply_legacy(ctx: Engine, s: KpiShard, ev: InboundEvent, now: float) -> None:
    """An inbound event on a KPI shard: only a payment that waited in the earlier layout's
    ``g:kpis`` (payments are no longer routed there). Counted as that layout did, then moved."""
    if s.key != KPIS:
        return
    if type(ev) is PaymentSucceeded or type(ev) is PaymentFailed:
        pid = ev.payment_id
        ok = 1 if type(ev) is PaymentSucceeded else 0
        method = getattr(ev, "method", None)
        entry = s.payments.get(pid)
        if entry is None:
            s.payments[pid] = [hour_of(ev.occurred_ts), method, ok]
        elif len(entry) == 3:  # not published yet (a published one is final)
            first = entry[1] if entry[1] is not None or not method else method
            s.payments[pid] = [entry[0], first, entry[2] or ok]
    migrate(ctx, s, now)


def migrate(ctx: Engine, s: KpiShard, now: float) -> None:
    """Move the earlier layout's ``g:kpis`` to the hours' shards: each item of its open windows,
    and each payment whose hour it has not published, is sent as a contribution (merged there
    with what orders send); its published payments (kept a day against late callbacks) are
    dropped, the orders' shards know their payments now. It keeps ``closed_until`` alone."""
    for name in list(s.windows):
        kpi, _, at = name.partition("|")
        start = float(at)
        for item, (dim, hit) in s.windows.pop(name).items():
            ctx.send_contribution(_contribution(kpi, start, dim, item, hit, now))
    for pid in list(s.payments):
        entry = s.payments.pop(pid)
        if len(entry) == 3:
            start, method, ok = entry
            ctx.send_contribution(_payment_record(ctx, pid, start, method or UNKNOWN, ok, now))
    for name in [n for n in s.timers if n.startswith(CLOSE)]:
        ctx.unschedule(s, name)
    ctx.dirty.add(s.key)


__all__ = ["KPIS", "hour_key"]
