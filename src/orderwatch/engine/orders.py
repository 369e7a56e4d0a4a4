"""Rules kept per order: payment, inventory, logistics, order, customer and per-order fraud rules.

Each handler updates the order's shard from one event and raises or resolves what that event
decides. Timeout rules are not scheduled by hand: after every event ``_refresh`` derives each
timeout's deadline from the shard (``_desired``) and the sweep re-derives it when it fires, so a
deadline can never disagree with the state it was computed from.

Handlers are written to be idempotent: the same event read twice (at-least-once delivery) leaves
the shard as it was, and "later" always means later in event time, never later in arrival.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from orderwatch.engine import behaviour, kpi
from orderwatch.engine.catalog import Rule, format_duration
from orderwatch.engine.lifecycle import exception_id, iso
from orderwatch.engine.params import INF, NO_FACTS, ORDER_FACTS
from orderwatch.engine.state import OrderShard, Payment, Shard, share_facts
from orderwatch.events.inbound import (
    PROGRESS,
    TERMINAL,
    Address,
    InboundEvent,
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    LogisticsDelivered,
    LogisticsException,
    LogisticsOutForDelivery,
    LogisticsScanned,
    LogisticsShipped,
    OrderAddressChanged,
    OrderCreated,
    OrderCreationFailed,
    OrderStatusChanged,
    PaymentFailed,
    PaymentRefunded,
    PaymentSucceeded,
    epoch_seconds,
)
from orderwatch.normalize import (
    is_valid_address,
    is_valid_phone,
    mask_phone,
    normalize_address,
    normalize_address_text,
    normalize_phone,
    redact_address,
)

if TYPE_CHECKING:
    from orderwatch.engine.core import Engine

PAID_NOT_UPDATED = "payment.paid_not_updated"
FAILED_UNPAID = "payment.failed_unpaid"
PAYMENT_ORPHAN = "payment.orphan"
NOT_SHIPPED = "logistics.not_shipped"
TRACKING_STALE = "logistics.tracking_stale"
DELIVERY_DELAYED = "logistics.delivery_delayed"
LOGISTICS_ORPHAN = "logistics.orphan"
SHIPPED_UNPAID = "order.shipped_unpaid"

#: The order's timeout rules, each a deadline derived from the shard by ``_desired``.
TIMEOUTS = (
    PAID_NOT_UPDATED,
    FAILED_UNPAID,
    PAYMENT_ORPHAN,
    NOT_SHIPPED,
    TRACKING_STALE,
    DELIVERY_DELAYED,
    LOGISTICS_ORPHAN,
    SHIPPED_UNPAID,
)
_TIMEOUT_SET = TIMEOUT_SET = frozenset(TIMEOUTS)
#: the timeouts whose parameter is a grace period rather than a threshold
GRACE = frozenset((PAYMENT_ORPHAN, LOGISTICS_ORPHAN, SHIPPED_UNPAID))
_CANCELLED = frozenset({"cancelled", "closed"})
_PAID, _SHIPPED, _DELIVERED = PROGRESS["paid"], PROGRESS["shipped"], PROGRESS["delivered"]


_ZERO = Decimal(0)


def _money_text(amount: Decimal) -> str:
    """An amount as the shard keeps it, interned: prices repeat across the orders held, and a
    fresh string per order and payment is over 50 bytes (interned strings are freed with their
    last user, so odd amounts do not pile up)."""
    return sys.intern(str(amount))


def apply(ctx: Engine, s: OrderShard, ev: InboundEvent, now: float) -> None:
    kind = type(ev)
    if kind is OrderStatusChanged:  # the most frequent order event (no fact to note)
        if _status_moved(ctx, s, ev, now):  # type: ignore[arg-type]
            _refresh(ctx, s)
    else:
        noter = _FACT_NOTERS.get(kind)  # ``note_facts``, inline: before the handler
        noted = noter is not None and noter(s, ev)
        if kind in _SCANS:  # the next most frequent: a carrier's scan on the way
            if _scan_moved(ctx, s, ev, now):  # (always True with tuned timeouts: facts count)
                _refresh(ctx, s)
        else:
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(ctx, s, ev, now)
            if kind not in _NO_TIMEOUT_INPUT or (noted and ctx.tuned_timeouts):
                _refresh(ctx, s)
    # v2: refunds and rejections counted per customer (of the status changes, only a refund)
    if kind in behaviour.WATCHED and (
        kind is not OrderStatusChanged or ev.status == behaviour.REFUNDED  # type: ignore[union-attr]
    ):
        behaviour.observe(ctx, s, ev, now)
    # v2: on-time shipment and delivery (section 11), payments; of the other events only those
    # that may judge the order (``kpi.ALWAYS``)
    if kind in kpi.WATCHED and (
        kind in kpi.ALWAYS or (s.shipped_at is not None and s.kpi_done != kpi.JUDGED)
    ):
        kpi.observe(ctx, s, ev, now)
    # ``compact`` does nothing to an order not finished (most events): ``finished``, inline
    if (s.delivered_at is not None or s.status in _CANCELLED) and not (
        s.open or s.parked or s.short_stock
    ):
        compact(s)


#: Events whose handlers change nothing a timeout is derived from (``_desired``'s fields, or an
#: open or done exception of a timeout rule): ``_refresh`` is idempotent and already ran after
#: every earlier change of the shard, so after these it could only confirm what is scheduled.
_NO_TIMEOUT_INPUT: frozenset[type] = frozenset(
    (InventoryReserved, InventoryReservationFailed, InventoryReleased)
)


# --- order.* ---------------------------------------------------------------------------------


def _created(ctx: Engine, s: OrderShard, ev: OrderCreated, now: float) -> None:
    at = ev.occurred_ts
    oid = s.order_id
    if s.created_eid is not None:
        # a re-delivery was judged when first read (the blacklist may have changed since), and
        # a second, different order.created for one order does not replace the first
        return
    s.created_eid = ev.event_id
    s.created_at = at
    s.total = _money_text(ev.total_amount)
    s.currency = ev.currency
    promised = ev.promised_delivery_by  # ``timestamp()`` exactly (``epoch_seconds``)
    s.promised_by = epoch_seconds(promised) if promised else None
    life = ctx.life
    for orphan in (PAYMENT_ORPHAN, LOGISTICS_ORPHAN) if s.open else ():
        if _is_open(s, orphan):
            life.resolve(s, orphan, oid, now, [ev.event_id], {"order_created_at": iso(at)})
    for pid, p in s.payments.items():
        _check_amount(ctx, s, pid, p, now)
    if s.address_at is None or at >= s.address_at:
        s.address_at, s.address_eid = at, ev.event_id
        _judge_address(ctx, s, ev, now)
    else:
        _judge_superseded_address(ctx, s, ev, now)
    remark = (ev.remark or "").casefold()
    if remark and ctx.enabled("customer.remark_attention"):
        hits = [
            k for k in ctx.params("customer.remark_attention", s).keywords if k.casefold() in remark
        ]
        if hits:
            life.raise_(
                s,
                "customer.remark_attention",
                oid,
                ev.event_id,
                at,
                now,
                [ev.event_id],
                {"keywords": ", ".join(hits)},
                order_id=oid,
            )
    if ctx.enabled("fraud.abnormal_quantity"):
        limit = ctx.params("fraud.abnormal_quantity", s).max_quantity
        big = [item for item in ev.items if item.quantity > limit]
        if big:
            worst = max(big, key=lambda item: item.quantity)
            life.raise_(
                s,
                "fraud.abnormal_quantity",
                oid,
                ev.event_id,
                at,
                now,
                [ev.event_id],
                {
                    "sku": worst.sku,
                    "quantity": worst.quantity,
                    "max_quantity": limit,
                    "lines_over_limit": len(big),
                },
                order_id=oid,
                sku=worst.sku,
            )
    _check_blacklist(ctx, s, ev, now)


def _valid_phone(addr: Address) -> bool:
    return is_valid_phone(addr.phone, addr.country)


def _phone_values(addr: Address) -> dict[str, Any]:
    return {"phone": mask_phone(addr.phone), "country": addr.country}


#: The rules judged on each address an order gets: (rule, whether the address passes, the values
#: of its exception). The values (a hash, a masked phone) are built only when one is raised or
#: resolved.
_ADDRESS_RULES: tuple[tuple[str, Callable[[Address], bool], Callable[[Address], Any]], ...] = (
    ("customer.invalid_address", is_valid_address, redact_address),
    ("customer.invalid_phone", _valid_phone, _phone_values),
)


def _judge_address(
    ctx: Engine, s: OrderShard, ev: OrderCreated | OrderAddressChanged, now: float
) -> None:
    """Raise or resolve the address and phone rules for the address the order now has."""
    at = ev.occurred_ts
    addr = ev.shipping_address
    changed = isinstance(ev, OrderAddressChanged)
    for rule_id, valid, values in _ADDRESS_RULES:
        if not valid(addr):
            oid = s.order_id
            ctx.life.raise_(
                s, rule_id, oid, ev.event_id, at, now, [ev.event_id], values(addr), order_id=oid
            )
        elif changed and _is_open(s, rule_id):
            _resolve_if_later(ctx, s, rule_id, at, now, ev.event_id, values(addr))


def _is_open(s: Shard, rule_id: str) -> bool:
    return bool(s.open) and f"{rule_id}|{s.key[2:]}" in s.open


def _resolve_if_later(
    ctx: Engine, s: Shard, rule_id: str, at: float, now: float, eid: str, values: dict[str, Any]
) -> None:
    """Resolve only with an event that happened after the exception's condition did."""
    op = s.open.get(f"{rule_id}|{s.key[2:]}")
    if op is not None and at > op.event_time:
        ctx.life.resolve(s, rule_id, op.subject, now, [eid], values)


def _address_changed(ctx: Engine, s: OrderShard, ev: OrderAddressChanged, now: float) -> None:
    at = ev.occurred_ts
    _resolve_if_later(
        ctx, s, "customer.unreachable", at, now, ev.event_id, {"address_changed_at": iso(at)}
    )
    if (
        s.unreachable is not None
        and s.unreachable[0] > at
        and (s.address_changed_at is None or s.address_changed_at <= s.unreachable[0])
    ):
        # a delivery that failed *after* this change was read before it (and kept quiet while
        # the earlier report was open): it stands on its own, as in time order. Not when an
        # address change after that failure was read already: the failure was judged then (a
        # re-delivered older change raised it again, found by the re-delivery property)
        failed_at, eid, kind, carrier, tracking_no = s.unreachable
        oid = s.order_id
        values = {"kind": kind, "carrier": carrier, "tracking_no": tracking_no}
        ctx.life.raise_(
            s, "customer.unreachable", oid, eid, failed_at, now, [eid], values, order_id=oid
        )
    if s.address_changed_at is None or at > s.address_changed_at:
        s.address_changed_at = at
    if s.address_at is None or at >= s.address_at:
        s.address_at, s.address_eid = at, ev.event_id
        _judge_address(ctx, s, ev, now)


def _judge_superseded_address(ctx: Engine, s: OrderShard, ev: OrderCreated, now: float) -> None:
    """An order created with a bad address whose later fix was read first: the bad address
    still held from creation until the fix, so the exception is raised and resolved, both, as a
    timeout whose resolving event was read late is (contract, section 3).

    Nothing open for the rule means the later address was judged valid when it was read (an
    invalid one would have raised, and this raise then does nothing).
    """
    addr = ev.shipping_address
    at, oid, life = ev.occurred_ts, s.order_id, ctx.life
    # (only reached when a later address was read, so address_at is set)
    fixed = {"address_changed_at": iso(s.address_at if s.address_at is not None else at)}
    for rule_id, valid, values in _ADDRESS_RULES:
        if valid(addr) or _is_open(s, rule_id):
            continue
        if life.raise_(
            s, rule_id, oid, ev.event_id, at, now, [ev.event_id], values(addr), order_id=oid
        ):
            life.resolve(s, rule_id, oid, now, [s.address_eid or ev.event_id], fixed)


def blacklist_value(kind: str, value: str) -> str:
    """The comparable form of a blacklist entry (addresses and phones normalized)."""
    if kind == "phone":
        return normalize_phone(value)
    if kind == "address":
        # compared without the field separators, so a risk analyst's free-form entry matches too
        return normalize_address_text(value).replace("|", "")
    return value.strip()


def _check_blacklist(ctx: Engine, s: OrderShard, ev: OrderCreated, now: float) -> None:
    if not ctx.enabled("fraud.blacklisted"):
        return
    bl = ctx.blacklist
    matched = []
    if ev.customer.customer_id.strip() in bl["customer_id"]:
        matched.append("customer_id")
    # (an empty list matches nothing: no need to normalize for it, the usual case)
    if bl["phone"]:
        phones = {normalize_phone(ev.customer.phone), normalize_phone(ev.shipping_address.phone)}
        if bl["phone"] & (phones - {""}):
            matched.append("phone")
    if bl["address"] and normalize_address(ev.shipping_address).replace("|", "") in bl["address"]:
        matched.append("address")
    if matched:
        at = ev.occurred_ts
        oid = s.order_id
        ctx.life.raise_(
            s,
            "fraud.blacklisted",
            oid,
            ev.event_id,
            at,
            now,
            [ev.event_id],
            {"matched": ", ".join(matched), "customer_id": ev.customer.customer_id},
            order_id=oid,
        )


def _status(ctx: Engine, s: OrderShard, ev: OrderStatusChanged, now: float) -> None:
    at, eid = ev.occurred_ts, ev.event_id  # read once: a model's attribute is a slow read
    new: str = ev.status
    before: str | None = ev.previous_status
    # Only a strictly later event moves away from the status we hold: two changes in the same
    # second may arrive in either order, and flagging that would be a false alarm.
    if before is None and s.status is not None and at > s.status_at:
        before = s.status
    if before is not None and _is_regression(before, new):
        ctx.life.raise_(
            s,
            "order.status_regression",
            s.order_id,
            eid,
            at,
            now,
            [eid],
            {"from_status": before, "to_status": new},
            order_id=s.order_id,
        )
    _log_status(s, at, new)
    if s.status is None or at >= s.status_at:
        s.status, s.status_at, s.status_eid = new, at, eid
    rank = PROGRESS.get(new, -1)
    if rank >= _PAID:
        if s.paid_status_at is None or at < s.paid_status_at:
            s.paid_status_at, s.paid_status_eid = at, eid
        if s.open:  # most orders have nothing open: no evidence to build
            ctx.life.resolve(s, PAID_NOT_UPDATED, s.order_id, now, [eid], {"status": new})
        _became_paid(ctx, s, eid, now)
    if rank >= _SHIPPED and (s.shipped_at is None or at < s.shipped_at):
        s.shipped_at, s.shipped_eid = at, eid
        if s.open:
            ctx.life.resolve(s, NOT_SHIPPED, s.order_id, now, [eid], {"status": new})
    if rank >= _DELIVERED:
        _delivered(ctx, s, at, eid, now)
    if new in TERMINAL and s.status == new and s.open:
        # the order no longer needs shipping: chasing the warehouse for it would be noise
        ctx.life.resolve(s, NOT_SHIPPED, s.order_id, now, [eid], {"status": new})
    if new in _CANCELLED:
        if s.cancelled_at is None or at < s.cancelled_at:
            s.cancelled_at, s.cancelled_eid = at, eid
        for pid, p in s.payments.items():
            _check_after_cancel(ctx, s, pid, p, now)


def _status_moved(ctx: Engine, s: OrderShard, ev: OrderStatusChanged, now: float) -> bool:
    """``_status``, then whether it changed anything the order's timeouts are derived from.

    Of what ``_refresh`` reads, ``_status`` writes only the status (``_desired`` asks only
    whether it is cancelled or closed, and whether it is terminal), the paid, shipped and
    delivered times, the shipped event, and the open and done exceptions (through the
    lifecycle, counted by ``Lifecycle.changes``). When none of them moved, ``_refresh``, which
    ran after every earlier change of the shard, could only confirm what is scheduled: most
    status changes (pending, allocated, and shipped or delivered after the carrier said so)
    skip it. With overrides or calendars on a timeout (``tuned_timeouts``) it always runs.
    """
    if ctx.tuning.timeouts:
        _status(ctx, s, ev, now)
        return True
    # ``_timeout_inputs`` before and after, field by field in locals: the same object is the
    # same value, and another object (equal or not) only makes ``_refresh`` run, idempotent
    life = ctx.life
    status, changes = s.status, life.changes
    paid, shipped, shipped_eid, delivered = (
        s.paid_status_at,
        s.shipped_at,
        s.shipped_eid,
        s.delivered_at,
    )
    _status(ctx, s, ev, now)
    if (
        s.paid_status_at is not paid
        or s.shipped_at is not shipped
        or s.shipped_eid is not shipped_eid
        or s.delivered_at is not delivered
        or life.changes != changes
    ):
        return True
    new = s.status
    return new is not status and (
        (new in _CANCELLED) != (status in _CANCELLED) or (new in TERMINAL) != (status in TERMINAL)
    )


def _timeout_inputs(ctx: Engine, s: OrderShard) -> tuple[object, ...]:
    """What of ``_refresh``'s inputs ``_status`` can move (``_status_moved`` compares them
    field by field, without building this tuple; kept as their definition)."""
    status = s.status
    return (
        status in _CANCELLED,
        status in TERMINAL,
        s.paid_status_at,
        s.shipped_at,
        s.shipped_eid,
        s.delivered_at,
        ctx.life.changes,
    )


#: carrier scans on the way (neither the shipment nor its end): ``_scan_moved``
_SCANS: frozenset[type] = frozenset((LogisticsScanned, LogisticsOutForDelivery))


def _scan_moved(ctx: Engine, s: OrderShard, ev: Any, now: float) -> bool:
    """``_logistics`` for a scan, then whether ``_refresh`` must run in full after it.

    Of what ``_refresh`` reads, a scan writes only the first and the latest carrier event and
    the open and done exceptions (resolving ``logistics.tracking_stale``, counted by
    ``Lifecycle.changes``). When only the latest carrier event moved (a scan later than the
    last one, the usual case), the one timeout derived from it, ``logistics.tracking_stale``,
    is brought in line here exactly as ``_refresh`` would (``_refresh_tracking``); nothing
    else of ``_desired`` can differ, and ``_refresh`` ran after every earlier change of the
    shard. With overrides or calendars on a timeout (``tuned_timeouts``), or a catalog
    without every timeout rule, it always runs in full.
    """
    if ctx.tuning.timeouts or len(ctx.timeout_limits) != len(TIMEOUTS):
        _logistics(ctx, s, ev, now)
        return True
    last, first, changes = s.last_logi_at, s.first_logi_at, ctx.life.changes
    _logistics(ctx, s, ev, now)
    if s.first_logi_at is not first or ctx.life.changes != changes:
        return True
    if s.last_logi_at is not last:
        _refresh_tracking(ctx, s)
    return False


def _refresh_tracking(ctx: Engine, s: OrderShard) -> None:
    """``_refresh`` for ``logistics.tracking_stale`` alone: its due time as ``_desired``
    derives it, scheduled (``postpone``) or cancelled by the same test of being armed."""
    shipped_at = s.shipped_at
    if shipped_at is None or s.delivered_at is not None or not s.shipped_eid:
        return  # not desired, before the scan as after it: not scheduled either
    last = s.last_logi_at or shipped_at
    if shipped_at > last:
        last = shipped_at
    due = last + ctx.timeout_limits[TRACKING_STALE]
    deadlines = s.timers
    if _armed(ctx, s, TRACKING_STALE, due):
        if deadlines.get(TRACKING_STALE) != due:
            ctx.postpone(s, TRACKING_STALE, due)
    elif TRACKING_STALE in deadlines:
        ctx.unschedule(s, TRACKING_STALE)


def _is_regression(before: str, after: str) -> bool:
    """Backwards in the progress order, or out of a terminal status into a non-terminal one.

    Moving between terminal statuses (cancelled -> refunded) is the normal end of an order, not a
    regression.
    """
    if before in TERMINAL:
        return after not in TERMINAL
    b, a = PROGRESS.get(before), PROGRESS.get(after)
    return b is not None and a is not None and a < b


def creation_failed(ctx: Engine, s: Shard, ev: OrderCreationFailed, now: float) -> None:
    at = ev.occurred_ts
    subject = ev.order_id or ev.event_id
    ctx.life.raise_(
        s,
        "order.creation_failed",
        subject,
        ev.event_id,
        at,
        now,
        [ev.event_id],
        {"error_code": ev.error_code, "customer_id": ev.customer_id},
        order_id=ev.order_id,
    )


# --- payment.* -------------------------------------------------------------------------------


def _first_success(s: OrderShard) -> tuple[float, str, str] | None:
    best: tuple[float, str, str] | None = None
    for pid, p in s.payments.items():
        if p.at is not None and p.event_id is not None and (best is None or (p.at, pid) < best[:2]):
            best = (p.at, pid, p.event_id)
    return best


def _paid_at(s: OrderShard, first: tuple[float, str, str] | None = None) -> float | None:
    """When the order first counted as paid; ``first`` is ``_first_success(s)`` if known."""
    if first is None:
        first = _first_success(s)
    times = [t for t in (s.paid_status_at, first[0] if first else None) if t is not None]
    return min(times) if times else None


def _succeeded(ctx: Engine, s: OrderShard, ev: PaymentSucceeded, now: float) -> None:
    at = ev.occurred_ts
    p = s.payments.get(ev.payment_id)
    if p is None:
        p = s.payments[ev.payment_id] = Payment()
    if p.at is None or (at, ev.event_id) < (p.at, p.event_id or ""):
        p.amount, p.currency, p.event_id, p.at = (
            _money_text(ev.amount),
            ev.currency,
            ev.event_id,
            at,
        )
    _settle_refunds(p)
    if s.open:
        ctx.life.resolve(
            s, FAILED_UNPAID, s.order_id, now, [ev.event_id], {"payment_id": ev.payment_id}
        )
    _became_paid(ctx, s, ev.event_id, now)
    _check_after_cancel(ctx, s, ev.payment_id, p, now)
    _check_duplicate(ctx, s, now)
    _check_amount(ctx, s, ev.payment_id, p, now)


def _became_paid(ctx: Engine, s: OrderShard, eid: str, now: float) -> None:
    if s.open:
        ctx.life.resolve(s, SHIPPED_UNPAID, s.order_id, now, [eid], {"paid_by_event": eid})
    if not s.short_stock:
        return
    for sku, (wh, fail_eid, fail_at) in list(s.short_stock.items()):
        _raise_oversold(
            ctx,
            s,
            sku,
            wh,
            fail_eid,
            max(fail_at, _paid_at(s) or fail_at),
            now,
            {"reason": "insufficient_stock"},
        )
        del s.short_stock[sku]


def _failed(ctx: Engine, s: OrderShard, ev: PaymentFailed, now: float) -> None:
    at = ev.occurred_ts
    if s.failed_at is None or (at, ev.event_id) < (s.failed_at, s.failed_eid or ""):
        s.failed_at, s.failed_eid = at, ev.event_id


def _refunded(ctx: Engine, s: OrderShard, ev: PaymentRefunded, now: float) -> None:
    p = s.payments.get(ev.payment_id)
    if p is None:
        p = s.payments[ev.payment_id] = Payment()
    if p.refunded or (p.refunds is not None and ev.refund_id in p.refunds):
        return
    if p.refunds is None:
        p.refunds = {}
    p.refunds[ev.refund_id] = _money_text(ev.amount)
    _settle_refunds(p)
    if not p.refunded:
        return  # a partial refund (one item returned) leaves the payment standing
    p.refund_event_id = ev.event_id
    oid = s.order_id
    values = {"refunded_payment_id": ev.payment_id, "refund_id": ev.refund_id}
    op = s.open.get(f"payment.after_cancel|{oid}")
    if op is not None and op.values.get("payment_id") == ev.payment_id:
        ctx.life.resolve(s, "payment.after_cancel", oid, now, [ev.event_id], values)
        for other_id, other in s.payments.items():  # a second late payment waited for this one
            _check_after_cancel(ctx, s, other_id, other, now)
    if len(_active_payments(s)) <= 1:
        ctx.life.resolve(s, "payment.duplicate", oid, now, [ev.event_id], values)


def _settle_refunds(p: Payment) -> None:
    """A payment counts as refunded once its distinct refunds add up to its amount.

    Before the payment itself is read its amount is unknown, so the refunds wait for it.
    """
    if p.refunded or p.amount is None or not p.refunds:
        return
    refunded = sum((Decimal(a) for a in p.refunds.values()), Decimal(0))
    p.refunded = refunded >= Decimal(p.amount)


def _active_payments(s: OrderShard) -> list[tuple[float, str, Payment]]:
    return sorted(
        (p.at, pid, p) for pid, p in s.payments.items() if p.at is not None and not p.refunded
    )


def _check_duplicate(ctx: Engine, s: OrderShard, now: float) -> None:
    if len(s.payments) < 2:
        return  # fewer than two active ones (nearly every order): nothing to sort
    active = _active_payments(s)
    if len(active) < 2:
        return
    (_, pid1, p1), (at2, pid2, p2) = active[0], active[1]
    oid = s.order_id
    ctx.life.raise_(
        s,
        "payment.duplicate",
        oid,
        f"{pid1}|{pid2}",
        at2,
        now,
        [e for e in (p1.event_id, p2.event_id) if e],
        {
            "payment_ids": f"{pid1}, {pid2}",
            "amounts": f"{p1.amount}, {p2.amount}",
            "succeeded_payments": len(active),
        },
        order_id=oid,
    )


def _check_amount(ctx: Engine, s: OrderShard, pid: str, p: Payment, now: float) -> None:
    if s.total is None or p.at is None or p.amount is None or p.event_id is None:
        return
    tolerance = ctx.params("payment.amount_mismatch", s).tolerance
    if p.amount == s.total and p.currency == s.currency and not tolerance < _ZERO:
        return  # the same amount text (most payments): a difference of zero, in tolerance
    diff = abs(Decimal(p.amount) - Decimal(s.total))
    if diff > tolerance or p.currency != s.currency:
        oid = s.order_id
        ctx.life.raise_(
            s,
            "payment.amount_mismatch",
            oid,
            pid,
            max(p.at, s.created_at or p.at),
            now,
            [e for e in (s.created_eid, p.event_id) if e],
            {
                "payment_id": pid,
                "paid_amount": p.amount,
                "paid_currency": p.currency,
                "order_total": s.total,
                "order_currency": s.currency,
                "difference": str(diff),
            },
            order_id=oid,
        )


def _log_status(s: OrderShard, at: float, status: str) -> None:
    """Keep the status history once an order has been cancelled or closed (rare: the others keep
    none), seeded with the latest status read so far if that is later than the cancel."""
    if s.status_log is None:
        if status not in _CANCELLED:
            return
        s.status_log = []
        if s.status is not None and s.status_at > at:
            s.status_log.append([s.status_at, s.status])
    entry = [at, status]
    if entry not in s.status_log:  # a re-delivery changes nothing
        s.status_log.append(entry)


def _cancelled_when(s: OrderShard, t: float) -> bool:
    """Whether the order's status at ``t`` was cancelled or closed ("already", in the contract's
    words): an order reopened after its cancel and paid after that is not."""
    if s.cancelled_at is None or t < s.cancelled_at:
        return False
    latest: list[Any] | None = None
    for entry in s.status_log or ():
        if entry[0] <= t and (latest is None or entry[0] >= latest[0]):
            latest = entry
    return latest is None or latest[1] in _CANCELLED


def _check_after_cancel(ctx: Engine, s: OrderShard, pid: str, p: Payment, now: float) -> None:
    if s.cancelled_at is None or p.at is None or p.refunded or not _cancelled_when(s, p.at):
        return
    oid = s.order_id
    ctx.life.raise_(
        s,
        "payment.after_cancel",
        oid,
        pid,
        p.at,
        now,
        [e for e in (s.cancelled_eid, p.event_id) if e],
        {
            "payment_id": pid,
            "amount": p.amount,
            "currency": p.currency,
            "cancelled_at": iso(s.cancelled_at),
        },
        order_id=oid,
    )


# --- inventory.* -----------------------------------------------------------------------------


def _raise_oversold(
    ctx: Engine,
    s: OrderShard,
    sku: str,
    wh: str,
    eid: str,
    at: float,
    now: float,
    values: dict[str, Any],
) -> None:
    oid = s.order_id
    ctx.life.raise_(
        s,
        "inventory.oversold",
        oid,
        eid,
        at,
        now,
        [eid],
        {"sku": sku, "warehouse_id": wh, **values},
        order_id=oid,
        sku=sku,
        warehouse_id=wh,
    )


def _reserved(ctx: Engine, s: OrderShard, ev: InventoryReserved, now: float) -> None:
    at = ev.occurred_ts
    # any later reservation of the sku ends a refusal; only one that leaves stock ends an oversell
    resolves = ["inventory.reservation_failed"]
    if ev.available_after < 0:
        values = {"available_after": ev.available_after, "quantity": ev.quantity}
        _raise_oversold(ctx, s, ev.sku, ev.warehouse_id, ev.event_id, at, now, values)
    else:
        short = s.short_stock.get(ev.sku) if s.short_stock else None
        if short is not None and at > short[2]:
            del s.short_stock[ev.sku]  # type: ignore[union-attr]
        resolves.append("inventory.oversold")
    if not s.open:
        return  # nothing to resolve (most orders)
    values = {"reserved_quantity": ev.quantity, "available_after": ev.available_after}
    for rule_id in resolves:
        op = s.open.get(f"{rule_id}|{s.order_id}")
        if op is not None and op.sku == ev.sku and at > op.event_time:
            ctx.life.resolve(s, rule_id, op.subject, now, [ev.event_id], values)


def _reservation_failed(
    ctx: Engine, s: OrderShard, ev: InventoryReservationFailed, now: float
) -> None:
    at = ev.occurred_ts
    oid = s.order_id
    if ev.reason == "insufficient_stock":
        if _paid_at(s) is not None:
            _raise_oversold(
                ctx,
                s,
                ev.sku,
                ev.warehouse_id,
                ev.event_id,
                at,
                now,
                {"reason": ev.reason, "quantity": ev.quantity},
            )
        else:
            if s.short_stock is None:
                s.short_stock = {}
            known = s.short_stock.get(ev.sku)
            if known is None or at < known[2]:
                s.short_stock[ev.sku] = [ev.warehouse_id, ev.event_id, at]
        return
    ctx.life.raise_(
        s,
        "inventory.reservation_failed",
        oid,
        ev.event_id,
        at,
        now,
        [ev.event_id],
        {
            "sku": ev.sku,
            "warehouse_id": ev.warehouse_id,
            "reason": ev.reason,
            "quantity": ev.quantity,
        },
        order_id=oid,
        sku=ev.sku,
        warehouse_id=ev.warehouse_id,
    )


def _released(ctx: Engine, s: OrderShard, ev: InventoryReleased, now: float) -> None:
    """Releasing stock decides nothing on its own; it is read so the order's shard stays alive."""


# --- logistics.* -----------------------------------------------------------------------------


def _logistics(ctx: Engine, s: OrderShard, ev: Any, now: float) -> None:
    at, eid = ev.occurred_ts, ev.event_id  # read once (``_status``)
    previous = s.last_logi_at
    if s.open and (previous is None or at > previous):
        op = s.open.get(f"{TRACKING_STALE}|{s.order_id}")
        if op is not None:
            ctx.life.resolve(
                s,
                TRACKING_STALE,
                s.order_id,
                now,
                [eid],
                {"new_event": ev.type, "new_event_at": iso(at)},
            )
    if previous is None or at > previous:
        s.last_logi_at, s.last_logi_eid = at, eid
    if s.first_logi_at is None or at < s.first_logi_at:
        s.first_logi_at, s.first_logi_eid = at, eid
    kind = type(ev)  # exact types: the event classes are leaves (``Engine.route``)
    if kind is LogisticsShipped:
        if s.logi_shipped_at is None or at < s.logi_shipped_at:
            s.logi_shipped_at = at
        if s.shipped_at is None or at < s.shipped_at:
            s.shipped_at, s.shipped_eid = at, eid
        if s.open:
            ctx.life.resolve(s, NOT_SHIPPED, s.order_id, now, [eid], {"carrier": ev.carrier})
    elif kind is LogisticsDelivered:
        _delivered(ctx, s, at, eid, now)
    elif kind is LogisticsException:
        _logistics_exception(ctx, s, ev, now)


def _delivered(ctx: Engine, s: OrderShard, at: float, eid: str, now: float) -> None:
    if s.delivered_at is None or at < s.delivered_at:
        s.delivered_at = at
    for rule_id in (DELIVERY_DELAYED, TRACKING_STALE):
        if _is_open(s, rule_id):
            ctx.life.resolve(s, rule_id, s.order_id, now, [eid], {"delivered_at": iso(at)})


def _logistics_exception(ctx: Engine, s: OrderShard, ev: LogisticsException, now: float) -> None:
    at = ev.occurred_ts
    oid = s.order_id
    values = {"kind": ev.kind, "carrier": ev.carrier, "tracking_no": ev.tracking_no}
    if ev.kind in ("lost", "damaged"):
        rule = "logistics.lost_or_damaged"
    elif ev.kind == "rejected":
        rule = "logistics.rejected"
    elif ev.kind in ("address_unreachable", "phone_unreachable"):
        if s.unreachable is None or at > s.unreachable[0]:
            s.unreachable = [at, ev.event_id, ev.kind, ev.carrier, ev.tracking_no]
        if s.address_changed_at is not None and s.address_changed_at > at:
            return  # read late: the address was already changed after the failed delivery
        rule = "customer.unreachable"
    else:
        return
    ctx.life.raise_(s, rule, oid, ev.event_id, at, now, [ev.event_id], values, order_id=oid)


# --- timeouts --------------------------------------------------------------------------------


def timeout_limits(rules: Mapping[str, Rule]) -> dict[str, float]:
    """Each timeout rule's threshold (or grace) in seconds, read once instead of per event.

    A rule missing from the catalog is missing here too, so ``_desired`` fails on it exactly as a
    parameter lookup would.
    """
    grace = (PAYMENT_ORPHAN, LOGISTICS_ORPHAN, SHIPPED_UNPAID)
    return {
        rule_id: float(
            rules[rule_id].params.grace if rule_id in grace else rules[rule_id].params.threshold
        )
        for rule_id in TIMEOUTS
        if rule_id in rules
    }


def _desired(ctx: Engine, s: OrderShard) -> dict[str, float]:
    """Each timeout rule's due time as the shard now stands.

    Runs after every event, so it computes times only; what a deadline says when it fires
    (evidence event, values) is built by ``_evidence`` from the same fields, and only then.
    With overrides or calendars on a timeout rule, ``_tuned_desired`` computes the same from
    ``anchors`` through the engine's parameter resolution.
    """
    if ctx.tuning.timeouts:  # ``ctx.tuned_timeouts``, without the property's call
        return _tuned_desired(ctx, s)
    out: dict[str, float] = {}
    # the time of ``_first_success``, without its tie-break between payments of the same time
    first_at: float | None = None
    for p in s.payments.values():
        at = p.at
        if at is not None and p.event_id is not None and (first_at is None or at < first_at):
            first_at = at
    status = s.status
    limit = ctx.timeout_limits
    paid_status_at = s.paid_status_at
    if first_at is None:
        paid_at = paid_status_at
    else:
        # min(paid_status_at, first_at) as ``_paid_at`` takes it: the status time on a tie
        if paid_status_at is None or first_at < paid_status_at:
            paid_at = first_at
        else:
            paid_at = paid_status_at
        if paid_status_at is None:
            out[PAID_NOT_UPDATED] = first_at + limit[PAID_NOT_UPDATED]
    if s.failed_at is not None and s.failed_eid and first_at is None and status not in _CANCELLED:
        out[FAILED_UNPAID] = s.failed_at + limit[FAILED_UNPAID]
    created = s.created_eid is not None
    if first_at is not None and not created:
        out[PAYMENT_ORPHAN] = first_at + limit[PAYMENT_ORPHAN]
    shipped_at = s.shipped_at
    if paid_at is not None and shipped_at is None and status not in TERMINAL:
        out[NOT_SHIPPED] = paid_at + limit[NOT_SHIPPED]
    if shipped_at is not None and s.delivered_at is None and s.shipped_eid:
        last = s.last_logi_at or shipped_at
        if shipped_at > last:  # max(last, shipped_at), the first on a tie
            last = shipped_at
        out[TRACKING_STALE] = last + limit[TRACKING_STALE]
        if s.promised_by is not None:
            out[DELIVERY_DELAYED] = s.promised_by
        else:
            out[DELIVERY_DELAYED] = shipped_at + limit[DELIVERY_DELAYED]
    if s.first_logi_at is not None and s.first_logi_eid and not created:
        out[LOGISTICS_ORPHAN] = s.first_logi_at + limit[LOGISTICS_ORPHAN]
    if s.logi_shipped_at is not None and paid_at is None and s.shipped_eid:
        out[SHIPPED_UNPAID] = s.logi_shipped_at + limit[SHIPPED_UNPAID]
    return out


def anchors(s: OrderShard) -> dict[str, float]:
    """When each due timeout's measured interval started (what ``_desired`` adds its threshold
    to), in the order of TIMEOUTS; ``logistics.delivery_delayed`` anchors at the shipped time
    even when a promised date replaces its threshold."""
    out: dict[str, float] = {}
    first_at: float | None = None
    for p in s.payments.values():
        at = p.at
        if at is not None and p.event_id is not None and (first_at is None or at < first_at):
            first_at = at
    status, paid_status_at = s.status, s.paid_status_at
    if first_at is None:
        paid_at = paid_status_at
    else:
        if paid_status_at is None or first_at < paid_status_at:
            paid_at = first_at
        else:
            paid_at = paid_status_at
        if paid_status_at is None:
            out[PAID_NOT_UPDATED] = first_at
    if s.failed_at is not None and s.failed_eid and first_at is None and status not in _CANCELLED:
        out[FAILED_UNPAID] = s.failed_at
    created = s.created_eid is not None
    if first_at is not None and not created:
        out[PAYMENT_ORPHAN] = first_at
    shipped_at = s.shipped_at
    if paid_at is not None and shipped_at is None and status not in TERMINAL:
        out[NOT_SHIPPED] = paid_at
    if shipped_at is not None and s.delivered_at is None and s.shipped_eid:
        last = s.last_logi_at or shipped_at
        out[TRACKING_STALE] = shipped_at if shipped_at > last else last
        out[DELIVERY_DELAYED] = shipped_at
    if s.first_logi_at is not None and s.first_logi_eid and not created:
        out[LOGISTICS_ORPHAN] = s.first_logi_at
    if s.logi_shipped_at is not None and paid_at is None and s.shipped_eid:
        out[SHIPPED_UNPAID] = s.logi_shipped_at
    return out


def _tuned_desired(ctx: Engine, s: OrderShard) -> dict[str, float]:
    out: dict[str, float] = {}
    for rule_id, anchor in anchors(s).items():
        if rule_id == DELIVERY_DELAYED and s.promised_by is not None:
            out[rule_id] = s.promised_by
            continue
        due = ctx.deadline(s, rule_id, anchor)
        if due != INF:  # a schedule with no working time left: it never comes due
            out[rule_id] = due
    return out


#: positions in ``OrderShard.facts``
_CHANNEL, _SOURCE, _COUNTRY, _PROVINCE, _CITY, _CARRIER, _WAREHOUSE, _METHOD = range(
    len(ORDER_FACTS)
)


def note_facts(s: OrderShard, ev: InboundEvent) -> bool:
    """Keep the fields rule overrides match on (``engine.params.ORDER_FACTS``) from the order's
    own events, before the handler updates the times compared here; whether they changed.

    They are few and repeat across orders (a channel, a carrier, a province), so each distinct
    combination is one shared tuple (``state.share_facts``): per order, one reference. Most
    events change nothing and return after a type lookup and a comparison.
    """
    noter = _FACT_NOTERS.get(type(ev))
    return noter is not None and noter(s, ev)


def _with(s: OrderShard, changes: tuple[tuple[int, str | None], ...]) -> bool:
    old = s.facts
    facts = list(NO_FACTS if old is None else old)
    for i, value in changes:
        facts[i] = value
    new = tuple(facts)
    if old is not None and tuple(old) == new:
        return False
    s.facts = share_facts(new)
    return True


def _facts_created(s: OrderShard, ev: OrderCreated) -> bool:
    if s.created_eid is not None:
        return False
    changes: tuple[tuple[int, str | None], ...] = ((_CHANNEL, ev.channel), (_SOURCE, ev.source))
    if s.address_at is None or ev.occurred_ts >= s.address_at:
        addr = ev.shipping_address
        changes += ((_COUNTRY, addr.country), (_PROVINCE, addr.province), (_CITY, addr.city))
    return _with(s, changes)


def _facts_address(s: OrderShard, ev: OrderAddressChanged) -> bool:
    if s.address_at is not None and ev.occurred_ts < s.address_at:
        return False
    addr = ev.shipping_address
    return _with(s, ((_COUNTRY, addr.country), (_PROVINCE, addr.province), (_CITY, addr.city)))


def _facts_carrier(s: OrderShard, ev: Any) -> bool:
    # the carrier first: noted already and the same (nearly every carrier event after the
    # first) is False whatever the time says, and the time is then not read (a model's field
    # is a slow read)
    facts = s.facts
    carrier = ev.carrier
    if facts is not None and facts[_CARRIER] == carrier:
        return False
    last = s.last_logi_at
    if last is not None and ev.occurred_ts <= last:
        return False
    return _with(s, ((_CARRIER, carrier),))


def _facts_warehouse(s: OrderShard, ev: InventoryReserved | InventoryReservationFailed) -> bool:
    facts = s.facts
    if facts is not None and facts[_WAREHOUSE] is not None:
        return False
    return _with(s, ((_WAREHOUSE, ev.warehouse_id),))


def _facts_method(s: OrderShard, ev: PaymentSucceeded) -> bool:
    facts = s.facts
    if ev.method is None or (facts is not None and facts[_METHOD] is not None):
        return False
    return _with(s, ((_METHOD, ev.method),))


_FACT_NOTERS: dict[type, Callable[[OrderShard, Any], bool]] = {
    OrderCreated: _facts_created,
    OrderAddressChanged: _facts_address,
    LogisticsShipped: _facts_carrier,
    LogisticsScanned: _facts_carrier,
    LogisticsOutForDelivery: _facts_carrier,
    LogisticsDelivered: _facts_carrier,
    LogisticsException: _facts_carrier,
    InventoryReserved: _facts_warehouse,
    InventoryReservationFailed: _facts_warehouse,
    PaymentSucceeded: _facts_method,
}


def _evidence(ctx: Engine, s: OrderShard, rule_id: str) -> tuple[str, dict[str, Any]]:
    """The evidence event and values of a timeout that ``_desired`` says is due now."""

    def p(rule: str) -> Any:
        return ctx.params(rule, s)

    if rule_id in (PAID_NOT_UPDATED, PAYMENT_ORPHAN, NOT_SHIPPED):
        first = _first_success(s)
        if rule_id == NOT_SHIPPED:
            paid_at = _paid_at(s)
            assert paid_at is not None
            t = p(NOT_SHIPPED).threshold
            eid = first[2] if first and first[0] == paid_at else (s.paid_status_eid or "")
            return eid, {"paid_at": iso(paid_at), "threshold": format_duration(t)}
        assert first is not None
        if rule_id == PAID_NOT_UPDATED:
            t = p(PAID_NOT_UPDATED).threshold
            return first[2], {
                "payment_id": first[1],
                "paid_at": iso(first[0]),
                "status": s.status or "not updated",
                "threshold": format_duration(t),
            }
        g = p(PAYMENT_ORPHAN).grace
        return first[2], {
            "payment_id": first[1],
            "paid_at": iso(first[0]),
            "grace": format_duration(g),
        }
    if rule_id == FAILED_UNPAID:
        assert s.failed_at is not None and s.failed_eid
        t = p(FAILED_UNPAID).threshold
        return s.failed_eid, {"failed_at": iso(s.failed_at), "threshold": format_duration(t)}
    if rule_id == TRACKING_STALE:
        assert s.shipped_at is not None and s.shipped_eid
        t = p(TRACKING_STALE).threshold
        last = max(s.last_logi_at or s.shipped_at, s.shipped_at)
        return s.last_logi_eid or s.shipped_eid, {
            "last_event_at": iso(last),
            "threshold": format_duration(t),
        }
    if rule_id == DELIVERY_DELAYED:
        assert s.shipped_at is not None and s.shipped_eid
        promised = s.promised_by
        if promised is None:
            promised = s.shipped_at + p(DELIVERY_DELAYED).threshold
        return s.shipped_eid, {"shipped_at": iso(s.shipped_at), "promised_by": iso(promised)}
    if rule_id == LOGISTICS_ORPHAN:
        assert s.first_logi_at is not None and s.first_logi_eid
        g = p(LOGISTICS_ORPHAN).grace
        return s.first_logi_eid, {
            "first_event_at": iso(s.first_logi_at),
            "grace": format_duration(g),
        }
    assert rule_id == SHIPPED_UNPAID and s.logi_shipped_at is not None and s.shipped_eid
    g = p(SHIPPED_UNPAID).grace
    return s.shipped_eid, {"shipped_at": iso(s.logi_shipped_at), "grace": format_duration(g)}


def _refresh(ctx: Engine, s: OrderShard) -> None:
    """Bring the shard's timeout deadlines in line with ``_desired``.

    A timeout is scheduled only while it could still raise a new exception: its rule enabled,
    no exception of it open for the order, and the one it would raise not raised before.
    """
    desired = _desired(ctx, s)  # in the order of TIMEOUTS, which is the order they are scheduled
    deadlines = s.timers
    if desired:
        kept = 0
        for rule_id, due in desired.items():
            if _armed(ctx, s, rule_id, due):
                kept += 1
                if deadlines.get(rule_id) != due:
                    if rule_id == TRACKING_STALE:
                        # max(latest carrier event, shipped) + a fixed threshold: once later, it
                        # never returns to an earlier time, as ``postpone`` requires
                        ctx.postpone(s, rule_id, due)
                    else:
                        ctx.schedule(s, rule_id, due)
            elif rule_id in deadlines:
                ctx.unschedule(s, rule_id)
    else:
        kept = 0
    if len(deadlines) > kept:
        # something beyond the desired timeouts: one may no longer be desired
        for name in [n for n in deadlines if n in _TIMEOUT_SET and n not in desired]:
            ctx.unschedule(s, name)


def _armed(ctx: Engine, s: OrderShard, rule_id: str, due: float) -> bool:
    """Whether timeout ``rule_id`` due at ``due`` could still raise a new exception: its rule
    enabled, no exception of it open for the order, and the one it would raise not raised
    before (``_refresh`` and ``_refresh_tracking`` schedule it only then)."""
    if rule_id not in ctx.enabled_timeouts:
        return False
    opened, done = s.open, s.done
    if not (opened or done):
        return True
    oid = s.key[2:]
    return f"{rule_id}|{oid}" not in opened and not (
        done and exception_id(rule_id, oid, iso(due)) in done
    )


def refresh(ctx: Engine, s: OrderShard) -> None:
    """``_refresh`` for a change made outside the order's own events (an operator's command)."""
    _refresh(ctx, s)


def on_deadline(ctx: Engine, s: OrderShard, name: str, due: float, now: float) -> None:
    if _desired(ctx, s).get(name) == due:
        _inhibitors_first(ctx, s, name, due, now)
        eid, values = _evidence(ctx, s, name)
        oid = s.order_id
        ctx.life.raise_(s, name, oid, iso(due), due, now, [eid], values, order_id=oid)
    _refresh(ctx, s)
    compact(s)


def _inhibitors_first(ctx: Engine, s: OrderShard, name: str, due: float, now: float) -> None:
    """Judge the timeouts that explain ``name`` (section 9) before it, when they are due at the
    same time or earlier: the target is then raised ``inhibited`` at once, not raised and then
    inhibited. (The default pair payment.orphan / paid_not_updated falls due at the same time.)
    """
    explaining = ctx.life.inhibition.inhibitors.get(name)
    if not explaining:
        return
    for rule_id in explaining:
        other = s.timers.get(rule_id)
        if other is not None and other <= due and rule_id in _TIMEOUT_SET:
            ctx.unschedule(s, rule_id)
            on_deadline(ctx, s, rule_id, other, now)


_HANDLERS: dict[type, Any] = {
    OrderCreated: _created,
    OrderStatusChanged: _status,
    OrderAddressChanged: _address_changed,
    OrderCreationFailed: creation_failed,
    PaymentSucceeded: _succeeded,
    PaymentFailed: _failed,
    PaymentRefunded: _refunded,
    InventoryReserved: _reserved,
    InventoryReservationFailed: _reservation_failed,
    InventoryReleased: _released,
    LogisticsShipped: _logistics,
    LogisticsScanned: _logistics,
    LogisticsOutForDelivery: _logistics,
    LogisticsDelivered: _logistics,
    LogisticsException: _logistics,
}


# --- a finished order keeps only what it still needs (issue 13, item 3) ----------------------

#: the times of an order that are often equal (shipped by its first carrier event, delivered
#: by its last, the address of its creation...): equal ones share one float object
_TIMES = (
    "created_at",
    "address_at",
    "status_at",
    "paid_status_at",
    "cancelled_at",
    "shipped_at",
    "logi_shipped_at",
    "delivered_at",
    "last_logi_at",
    "first_logi_at",
    "address_changed_at",
    "promised_by",
)


def _times(s: OrderShard) -> tuple[float | None, ...]:
    """The ``_TIMES`` of the shard, in that order (slot reads: a third of ``attrgetter``'s
    instructions; ``test_compaction`` holds the two to the same tuple)."""
    return (
        s.created_at,
        s.address_at,
        s.status_at,
        s.paid_status_at,
        s.cancelled_at,
        s.shipped_at,
        s.logi_shipped_at,
        s.delivered_at,
        s.last_logi_at,
        s.first_logi_at,
        s.address_changed_at,
        s.promised_by,
    )


def finished(s: OrderShard) -> bool:
    """Delivered, or cancelled or closed as it now stands, with nothing open or waiting."""
    if s.open or s.parked or s.short_stock:
        return False
    return s.delivered_at is not None or s.status in _CANCELLED


def compact(s: OrderShard) -> None:
    """Drop what a finished order can no longer use; runs after each of its events and
    deadlines, so a field a late event writes again is dropped again.

    Each field goes only when no later input can read it (``docs/architecture.md``, "Finished
    orders"), whatever arrives: the rules then decide exactly as with the field kept, which
    ``tests/unit/test_compaction.py`` checks against an engine that never compacts. What a late
    or repeated event still needs stays: the created and cancelled times and ids, the total,
    the status and its time (a regression), the status log (``payment.after_cancel``), every
    payment (a duplicate, a mismatch, a refund; with its KPI fields), the address times (a late
    change is judged), the facts (rule overrides), ``done``/``closed``/``replies`` (idempotence,
    commands) and the KPI dimensions. Dropped:

    * ``status_eid`` and each payment's ``refund_event_id``: written, never read;
    * once created: ``address_eid`` (a created read after a later address), ``first_logi_at``
      and ``first_logi_eid`` (``logistics.orphan``); ``created_eid`` is never unset;
    * once a payment succeeded (``at`` and ``event_id`` stay): ``failed_at``/``failed_eid``
      (``payment.failed_unpaid`` needs no success);
    * once paid (a success, or a status at or beyond paid, whose time only moves earlier):
      ``logi_shipped_at`` (``order.shipped_unpaid`` needs the order unpaid);
    * once shipped (``shipped_at`` only moves earlier): ``paid_status_eid`` (the evidence of
      ``logistics.not_shipped``);
    * once delivered (``delivered_at`` is never unset): ``last_logi_eid`` (the evidence of
      ``logistics.tracking_stale``), and ``shipped_eid`` too when also paid (tracking, delivery
      and ``order.shipped_unpaid`` all over).

    Lossless for the rest: the repeated strings (status, currencies, carrier, warehouse) are
    interned and equal times share one float, which a shard read back from JSON does not.
    """
    if not finished(s):
        return
    s.status_eid = None
    paid = False
    for p in s.payments.values():
        p.refund_event_id = None
        if p.currency is not None:
            p.currency = sys.intern(p.currency)
        if p.at is not None and p.event_id is not None:
            paid = True
    if s.created_eid is not None:
        s.address_eid = s.first_logi_at = s.first_logi_eid = None
    if paid:
        s.failed_at = s.failed_eid = None
    if paid or s.paid_status_at is not None:
        s.logi_shipped_at = None
    if s.shipped_at is not None:
        s.paid_status_eid = None
    if s.delivered_at is not None:
        s.last_logi_eid = None
        if paid or s.paid_status_at is not None:
            s.shipped_eid = None
    # (attribute by attribute, not a loop of getattr/setattr: a finished order is compacted
    # again after each of its later events, a third of them on a day of traffic)
    status, currency, carrier, warehouse_id = s.status, s.currency, s.carrier, s.warehouse_id
    if status is not None:
        s.status = sys.intern(status)
    if currency is not None:
        s.currency = sys.intern(currency)
    if carrier is not None:
        s.carrier = sys.intern(carrier)
    if warehouse_id is not None:
        s.warehouse_id = sys.intern(warehouse_id)
    times = _times(s)
    # equal times are one object already (the usual case once compacted): sorted, equal times
    # stand together, so it is enough that each one is its predecessor when equal to it (a
    # set of values against a set of ``id``s said the same for twice the instructions, the
    # ids being new integers to allocate and hash)
    previous: float | None = None
    for time in sorted([t for t in times if t is not None]):
        if time == previous and time is not previous:
            break
        previous = time
    else:
        return
    seen: dict[float, float] = {}
    for name, value in zip(_TIMES, times, strict=True):
        if value is not None:
            shared = seen.setdefault(value, value)
            if shared is not value:
                setattr(s, name, shared)
