"""Key indicators (CONTRACT section 11) per tumbling event-time UTC hour, pure like the rules.

Where each count comes from:

* ``payment_success_rate``: payment events are routed to the KPI shard ``g:kpis`` itself (as they
  are to the rate shard): per ``payment_id`` the hour of its first event read, the ``method`` of
  its first event that has one, and whether one succeeded.
* ``on_time_shipment_rate`` / ``on_time_delivery_rate`` are judged on the order's shard, where the
  order is: on time when it ships (is delivered) by its deadline (paid time + the
  ``logistics.not_shipped`` threshold; ``promised_delivery_by``), late when the order's own
  ``logistics.not_shipped`` (``logistics.delivery_delayed``) deadline passes first. Each order is
  judged once per indicator and sends one ``derived.Contribution`` to ``g:kpis`` (at once in
  replay, through the shard topic live), dimensioned by the warehouse of its first
  ``inventory.reserved`` and the carrier of its ``logistics.shipped``.

``g:kpis`` publishes a window's records once the clock passes its end plus ``GRACE`` (one
minute: live, contributions travel from other partitions), and drops what arrives for a window
already published. A late timeout needs the rule's deadline: with ``logistics.not_shipped``
(``logistics.delivery_delayed``) disabled only on-time orders are counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orderwatch.engine import derived
from orderwatch.engine.lifecycle import to_datetime
from orderwatch.engine.state import KPIS, KpiShard, OrderShard, Shard
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
NOT_SHIPPED = "logistics.not_shipped"
DELIVERY_DELAYED = "logistics.delivery_delayed"
#: order events after which an indicator may be judged (one set lookup for the others)
WATCHED: frozenset[type] = frozenset(
    {InventoryReserved, LogisticsShipped, LogisticsDelivered, OrderStatusChanged}
)
_SHIP_DONE, _DELIVERY_DONE = 1, 2


def hour_of(ts: float) -> float:
    return ts - ts % HOUR


# --- on the order's shard ----------------------------------------------------------------------


def observe(ctx: Engine, s: OrderShard, ev: InboundEvent, now: float) -> None:
    """After the order's own rules: note the dimensions, judge what is now on time."""
    kind = type(ev)
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
    oid = s.order_id
    ctx.send_contribution(
        derived.Contribution.model_construct(
            type=derived.CONTRIBUTION,
            event_id=f"{derived.CONTRIBUTION}|{kpi}|{oid}",
            kpi=kpi,
            window_start=hour_of(at),
            dimension=dim or "unknown",
            item=oid,
            hit=hit,
            occurred_ts=now,
        )
    )


# --- on the KPI shard --------------------------------------------------------------------------


def apply_contribution(ctx: Engine, s: KpiShard, c: derived.Contribution, now: float) -> None:
    if c.window_start < s.closed_until.get(c.kpi, float("-inf")):
        return  # its hour was published already
    window = s.windows.setdefault(f"{c.kpi}|{c.window_start}", {})
    window.setdefault(c.item, [c.dimension, c.hit])  # an order counts once
    _schedule_close(ctx, s, c.window_start)


def apply_payment(
    ctx: Engine, s: KpiShard, ev: PaymentSucceeded | PaymentFailed, now: float
) -> None:
    if type(ev) is not PaymentSucceeded and type(ev) is not PaymentFailed:
        return
    ok = 1 if type(ev) is PaymentSucceeded else 0
    method = getattr(ev, "method", None)
    entry = s.payments.get(ev.payment_id)
    if entry is not None and len(entry) > 3:
        return  # its hour is published: a later callback does not count it again
    if entry is None:
        start = hour_of(ev.occurred_ts)
        if start < s.closed_until.get(PAY, float("-inf")):
            return
        s.payments[ev.payment_id] = [start, method, ok]
        _schedule_close(ctx, s, start)
    else:
        # a new list, never a write into the stored one: an atomic step takes back the
        # shard's dict writes (``atomic._Tracked``), not writes inside its values
        first_method = entry[1] if entry[1] is not None or not method else method
        any_ok = entry[2] or ok
        if first_method is not entry[1] or any_ok != entry[2]:
            s.payments[ev.payment_id] = [entry[0], first_method, any_ok]
    ctx.dirty.add(s.key)


def _schedule_close(ctx: Engine, s: KpiShard, start: float) -> None:
    name = f"{CLOSE}{start}"
    if name not in s.timers:
        ctx.schedule(s, name, start + HOUR + GRACE)
    ctx.dirty.add(s.key)


def on_close(ctx: Engine, s: Shard, name: str, due: float, now: float) -> None:
    """The clock passed an hour's end (and the grace): publish its records, forget the hour."""
    if not isinstance(s, KpiShard) or not name.startswith(CLOSE):
        return
    start = float(name[len(CLOSE) :])
    counts: dict[tuple[str, str], list[int]] = {}
    for kpi in (SHIP, DELIVERY):
        for dim, hit in s.windows.pop(f"{kpi}|{start}", {}).values():
            c = counts.setdefault((kpi, dim), [0, 0])
            c[0] += hit
            c[1] += 1
        s.closed_until[kpi] = max(s.closed_until.get(kpi, float("-inf")), start + HOUR)
    for pid, entry in list(s.payments.items()):
        if len(entry) > 3:
            if entry[0] < start - DAY:  # published a day ago: late callbacks are over
                del s.payments[pid]
            continue
        if entry[0] != start:
            continue
        _, method, ok = entry
        # published: kept a day so that a late callback is not a new one (a new list: see
        # ``apply_payment``)
        s.payments[pid] = [*entry, True]
        c = counts.setdefault((PAY, method or "unknown"), [0, 0])
        c[0] += ok
        c[1] += 1
    s.closed_until[PAY] = max(s.closed_until.get(PAY, float("-inf")), start + HOUR)
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


__all__ = ["KPIS"]
