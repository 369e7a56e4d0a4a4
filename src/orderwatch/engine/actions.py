"""The remediation action lifecycle (CONTRACT section 10), pure like every rule.

Two halves, on two kinds of shard:

* **Deciding what to ask** happens where the exception lives (an order's shard): when an exception
  of a rule with action policies is raised with status open (never while inhibited), each policy
  whose conditions hold gives one action per target, with an ``action_id`` derived from the
  ``exception_id``, the type and the target only (a restart or a re-delivery derives the same id).
  When such an exception resolves, the action shard hears of it; an operator's approve or reject
  passes the exception's checks there (``unknown_exception``, ``invalid_command``, ``stale``) and
  goes on to the action shard, which replies.
* **Keeping each action's status and the limits** happens on one partition, the one owning
  ``g:actions``. The rate limit (N ``requested`` per type in any hour) and the circuit breaker
  (11 failed of the last 20 results of a type) are global per type, while exceptions are decided
  on order shards spread over every partition: every action passes through this one engine, so a
  limit is one count, exactly the contract's, the same in replay and live. ``g:actions`` itself
  holds only those limits (bounded by the types and their ``max_per_hour``); each action's
  record sits in its order's ``g:actions/<order_id>`` (``ActionRecords``), a shard of that same
  engine, so a step and a commit touch one order's few actions, never all of them, and a quiet
  order's records are forgotten after the retention period like any shard.
* **blacklist.suggest** is carried out by orderwatch itself: reaching ``requested`` (approved,
  or in mode auto) it makes a ``blacklist.added`` for the blacklist topic
  (``Engine.blacklist_records``) and the action ``succeeded``.

The order shard sends ``derived.Intent`` records, applied at once in replay and sent through the
shard topic to the partition owning ``g:actions`` live (``Engine.forward``), as fraud flags are.
Action events are collected in ``Engine.action_events`` (``take_actions``).
"""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from orderwatch.engine import derived
from orderwatch.engine.lifecycle import to_datetime
from orderwatch.engine.policy import ActionPolicy
from orderwatch.engine.state import (
    ACTION_RECORDS,
    ACTIONS,
    EVICT,
    ActionRecords,
    ActionShard,
    OrderShard,
    Shard,
)
from orderwatch.events.actions import ActionEvent, ActionFailed, ActionSucceeded
from orderwatch.events.commands import CommandApprove, CommandReject, CommandReply
from orderwatch.events.exception import ExceptionEvent
from orderwatch.events.inbound import BlacklistAdded

if TYPE_CHECKING:
    from orderwatch.engine.core import Engine

_NAMESPACE = uuid.UUID("0c1b7e2a-5d8f-4f5e-8a61-616374696f6e")  # "action" in the tail
HOUR = 3600.0
#: the circuit breaker: this many failed of the last ``BREAKER_OF`` results pause the type
BREAKER_FAILED = 11
BREAKER_OF = 20
BREAKER_PAUSE = 600.0
EXPIRY = "exp|"
BREAKER = "brk|"
HOLD = "fulfillment.hold"
RELEASE = "fulfillment.release"
SUGGEST = "blacklist.suggest"
#: a hold reaching these statuses holds its order (section 10: "a hold planned or requested")
HOLDING = frozenset({"planned", "requested"})
DECISIONS: frozenset[type] = frozenset({CommandApprove, CommandReject})
RESULTS: frozenset[type] = frozenset({ActionSucceeded, ActionFailed})


def action_id(exception_id: str, kind: str, target: str | None) -> str:
    """A UUIDv5 of the exception, the type and the target: the same after any restart."""
    return str(uuid.uuid5(_NAMESPACE, f"{exception_id}|{kind}|{target or ''}"))


# --- on the shard that owns the exception --------------------------------------------------------


def remediate(ctx: Engine, events: list[ExceptionEvent]) -> None:
    """Look at the exception events a step produced: request actions, report resolutions."""
    with_actions = ctx.remediating
    for e in events:
        if e.rule_id not in with_actions:
            continue
        if e.state == "raised" and e.status == "open":
            _request(ctx, e)
        elif e.state == "resolved":
            ctx.send_intent(
                derived.Intent.model_construct(
                    type=derived.INTENT,
                    event_id=f"{derived.INTENT}|resolved|{e.exception_id}",
                    kind="resolved",
                    exception_id=e.exception_id,
                    order_id=e.order_id,
                    occurred_ts=e.detected_at.timestamp(),
                    data={},
                )
            )


def _request(ctx: Engine, e: ExceptionEvent) -> None:
    shard = ctx.shards.get("o:" + e.order_id) if e.order_id else None
    order = shard if isinstance(shard, OrderShard) else None
    now = e.detected_at.timestamp()
    for policy in ctx.rules[e.rule_id].remediation:
        if policy.mode == "off":
            continue
        if policy.not_shipped and order is not None and order.shipped_at is not None:
            continue
        # a suggestion's value (the customer_id): kept with the action for the blacklist entry
        # approving it makes, never in the action event (which carries its hash)
        value = e.evidence.values.get("customer_id") if policy.type == SUGGEST else None
        for target, params in _targets(policy, e, order):
            aid = action_id(e.exception_id, policy.type, target)
            ctx.send_intent(
                derived.Intent.model_construct(
                    type=derived.INTENT,
                    event_id=f"{derived.INTENT}|request|{aid}",
                    kind="request",
                    exception_id=e.exception_id,
                    order_id=e.order_id,
                    occurred_ts=now,
                    data={
                        "action_id": aid,
                        "type": policy.type,
                        "exception_id": e.exception_id,
                        "rule_id": e.rule_id,
                        "order_id": e.order_id,
                        "target": target,
                        "params": params,
                        "mode": policy.mode,
                        "approval_ttl": policy.approval_ttl,
                        "max_per_hour": policy.max_per_hour,
                        **({"value": value} if isinstance(value, str) else {}),
                    },
                )
            )


def _targets(
    policy: ActionPolicy, e: ExceptionEvent, order: OrderShard | None
) -> list[tuple[str | None, dict[str, Any]]]:
    """``(target, params)`` of each action the policy asks for this exception (maybe none)."""
    kind, values = policy.type, e.evidence.values
    if kind == "payment.refund":
        if order is None:
            return []
        if e.rule_id == "payment.duplicate":
            # every succeeded, unrefunded payment except the earliest (it is the one kept)
            active = sorted(
                (p.at, pid, p)
                for pid, p in order.payments.items()
                if p.at is not None and not p.refunded
            )
            pays = [(pid, p) for _, pid, p in active[1:]]
        else:  # payment.after_cancel: the payment that came after the cancel
            late = values.get("payment_id")
            p = order.payments.get(late) if isinstance(late, str) else None
            pays = [] if p is None or p.refunded else [(str(late), p)]
        out: list[tuple[str | None, dict[str, Any]]] = []
        for pid, p in pays:
            if p.amount is None:
                continue
            if policy.max_amount is not None and Decimal(p.amount) > policy.max_amount:
                continue
            out.append((pid, {"amount": p.amount, "currency": p.currency}))
        return out
    if kind == "order.resync_status":
        return [(None, {"payment_id": values.get("payment_id")})]
    if kind == HOLD:
        return [(None, {"reason": policy.params.get("reason") or e.rule_id})]
    if kind == "customer.notify":
        params = {
            "template": policy.params.get("template") or e.rule_id,
            "locale": policy.params.get("locale") or "zh-CN",
        }
        if policy.params.get("coupon"):
            params["coupon"] = policy.params["coupon"]
        return [(None, params)]
    if kind == "carrier.claim":
        return [
            (None, {"carrier": values.get("carrier"), "tracking_no": values.get("tracking_no")})
        ]
    if kind == "blacklist.suggest":
        customer = values.get("customer_id")
        if not isinstance(customer, str):
            return []
        return [
            (
                None,
                {
                    "kind": "customer_id",
                    "value_hash": hashlib.sha256(customer.encode("utf-8")).hexdigest()[:16],
                },
            )
        ]
    return []


def decide(ctx: Engine, cmd: Any, status: str, at: float, order_id: str | None = None) -> None:
    """An approve or reject that passed its exception's checks: the action shard judges it.

    ``order_id`` is the exception's order, where the action's record is kept."""
    ctx.send_intent(
        derived.Intent.model_construct(
            type=derived.INTENT,
            event_id=f"{derived.INTENT}|decide|{cmd.event_id}",
            kind="decide",
            exception_id=cmd.exception_id,
            order_id=order_id,
            occurred_ts=at,
            data={
                "command_id": cmd.event_id,
                "action_id": cmd.action_id,
                "approve": type(cmd) is CommandApprove,
                "status": status,
                "actor": cmd.actor,
            },
        )
    )


# --- on the action shard -------------------------------------------------------------------------


def companions(event: Any) -> tuple[str, ...]:
    """The action records an intent or a result read on ``g:actions`` may change besides it
    (``engine.atomic`` copies them too, to undo a failed step)."""
    kind = type(event)
    if kind is derived.Intent:
        return (records_key(event.order_id, event.exception_id),)
    if kind in RESULTS:
        return (records_key(event.order_id, ""),)
    return ()


def records_key(order_id: str | None, exception_id: str) -> str:
    """Where an action's record is kept: with its order's other actions (every default policy
    serves a rule about one order); an action without an order, with its exception's."""
    return ACTION_RECORDS + (order_id or "x:" + exception_id)


def _records(
    ctx: Engine, order_id: str | None, exception_id: str, now: float, create: bool = True
) -> ActionRecords | None:
    """The order's action records (made when ``create``), marked changed and kept for the
    retention period from ``now``, as ``Engine._apply`` keeps a shard it applies an event to."""
    key = records_key(order_id, exception_id)
    shard = ctx.shards.get(key)
    if shard is None:
        if not create:
            return None
        shard = ctx.shards[key] = ActionRecords(key)
    assert isinstance(shard, ActionRecords)
    if now > shard.last_at:
        shard.last_at = now
    if shard.evict_at is None:
        ctx.schedule(shard, EVICT, now + ctx.retention)
    ctx.dirty.add(key)
    return shard


def apply_intent(ctx: Engine, s: ActionShard, intent: derived.Intent, now: float) -> None:
    """Apply at the time the exception's shard decided, not at this shard's clock: live, the
    action shard is another partition whose clock may be ahead of the sender's when the intent
    arrives, and the action's ``at`` must be what replay gives (which applies it at once)."""
    now = intent.occurred_ts
    if s.legacy is not None:
        migrate(ctx, s)
    if intent.kind == "request":
        _on_request(ctx, s, dict(intent.data), now)
    elif intent.kind == "resolved":
        _on_resolved(ctx, s, intent.exception_id, intent.order_id, now)
    else:
        _on_decide(ctx, s, intent, now)


def _on_request(ctx: Engine, s: ActionShard, rec: dict[str, Any], now: float) -> None:
    aid = rec["action_id"]
    r = _records(ctx, rec["order_id"], rec["exception_id"], now)
    assert r is not None
    if aid in r.actions:
        return  # at most one per action_id: a re-delivery, a re-raise, a restart
    r.actions[aid] = rec
    mode = rec["mode"]
    if mode == "dry_run":
        _set(ctx, r, rec, "planned", now)
    elif mode == "auto":
        _try_request(ctx, s, r, rec, now)
    else:
        _set(ctx, r, rec, "awaiting_approval", now)
        ctx.schedule(r, EXPIRY + aid, now + float(rec["approval_ttl"]))


def _try_request(
    ctx: Engine, s: ActionShard, r: ActionRecords, rec: dict[str, Any], now: float
) -> None:
    """``requested``, unless the type's breaker is open (``paused``) or its hourly limit is
    reached (``throttled``): both final, so a paused or throttled action is never sent late."""
    kind = rec["type"]
    ctx.dirty.add(s.key)
    if s.paused_until.get(kind, float("-inf")) > now:
        _set(ctx, r, rec, "paused", now)
        return
    times = [t for t in s.requested.get(kind, ()) if t > now - HOUR]
    if len(times) >= int(rec["max_per_hour"]):
        s.requested[kind] = times
        _set(ctx, r, rec, "throttled", now)
        return
    times.append(now)
    s.requested[kind] = times
    _set(ctx, r, rec, "requested", now)
    if kind == SUGGEST and rec.get("value"):
        _blacklist(ctx, r, rec, now)


def _blacklist(ctx: Engine, r: ActionRecords, rec: dict[str, Any], now: float) -> None:
    """orderwatch carries out a ``blacklist.suggest`` itself: the entry goes to the blacklist
    topic (read back by every partition, so the customer's next order is ``fraud.blacklisted``)
    and the action has succeeded. The value is the customer_id the exception named; the action
    event shows only its hash."""
    who = rec.get("approved_by")
    how = f"approved by {who}" if who else f"mode {rec['mode']}"
    ctx.blacklist_records.append(
        BlacklistAdded.model_construct(
            event_id=f"{SUGGEST}|{rec['action_id']}",
            type="blacklist.added",
            occurred_at=to_datetime(now),
            source="orderwatch",
            kind=rec["params"]["kind"],
            value=rec["value"],
            reason=(
                f"{rec['rule_id']} on order {rec['order_id']} "
                f"(exception {rec['exception_id']}, action {rec['action_id']}), {how}"
            ),
        )
    )
    _set(ctx, r, rec, "succeeded", now)


def _set(ctx: Engine, r: ActionRecords, rec: dict[str, Any], status: str, now: float) -> None:
    rec["status"], rec["at"] = status, now
    if rec["type"] == HOLD and status in HOLDING and rec["order_id"]:
        r.holds[rec["exception_id"]] = [rec["action_id"], True]
    ctx.action_events.append(
        ActionEvent.model_construct(
            action_id=rec["action_id"],
            type=rec["type"],
            exception_id=rec["exception_id"],
            rule_id=rec["rule_id"],
            order_id=rec["order_id"],
            target=rec["target"],
            params=dict(rec["params"]),
            mode=rec["mode"],
            status=status,  # type: ignore[arg-type]
            at=to_datetime(now),
            idempotency_key=rec["action_id"],
        )
    )
    ctx.dirty.add(r.key)


def _on_resolved(
    ctx: Engine, s: ActionShard, exception_id: str, order_id: str | None, now: float
) -> None:
    r = _records(ctx, order_id, exception_id, now, create=False)
    if r is None:
        return  # none of its actions was recorded (all off, or no target)
    for aid, rec in list(r.actions.items()):
        if rec["exception_id"] == exception_id and rec["status"] == "awaiting_approval":
            ctx.unschedule(r, EXPIRY + aid)
            _set(ctx, r, rec, "cancelled", now)
    holds = r.holds
    if exception_id not in holds or not holds[exception_id][1]:
        return
    holds[exception_id][1] = False
    if any(still for _, still in holds.values()):
        return  # another exception still holds the order
    hold = r.actions.get(holds[exception_id][0])
    r.holds = {}
    if hold is None:
        return
    aid = action_id(exception_id, RELEASE, None)
    if aid in r.actions:
        return
    rec = {
        **hold,
        "action_id": aid,
        "type": RELEASE,
        "params": {"reason": f"{hold['rule_id']} resolved"},
        # the hold's mode; a hold a person approved is released without asking again
        "mode": "dry_run" if hold["mode"] == "dry_run" else "auto",
    }
    rec.pop("approved_by", None)
    r.actions[aid] = rec
    if rec["mode"] == "dry_run":
        _set(ctx, r, rec, "planned", now)
    else:
        _try_request(ctx, s, r, rec, now)


def _on_decide(ctx: Engine, s: ActionShard, intent: derived.Intent, now: float) -> None:
    data = intent.data
    command_id = data["command_id"]
    r = _records(ctx, intent.order_id, intent.exception_id, now)
    assert r is not None
    if r.replies and command_id in r.replies:
        _reply(ctx, command_id, r.replies[command_id])
        return
    if s.replies and command_id in s.replies:  # decided under the earlier layout
        _reply(ctx, command_id, s.replies[command_id])
        return
    rec = r.actions.get(data["action_id"])
    status = data["status"]
    if (
        rec is None
        or rec["exception_id"] != intent.exception_id
        or rec["status"] != "awaiting_approval"
    ):
        reply = [intent.exception_id, False, "invalid_transition", status]
    else:
        ctx.unschedule(r, EXPIRY + rec["action_id"])
        if data["approve"]:
            if data.get("actor"):
                rec["approved_by"] = data["actor"]
            _try_request(ctx, s, r, rec, now)
        else:
            _set(ctx, r, rec, "rejected", now)
        reply = [intent.exception_id, True, None, status]
    if r.replies is None:
        r.replies = {}
    r.replies[command_id] = reply
    _reply(ctx, command_id, reply)


def _reply(ctx: Engine, command_id: str, reply: list[Any]) -> None:
    exception_id, accepted, reason, status = reply
    ctx.replies.append(
        CommandReply.model_construct(
            command_id=command_id,
            exception_id=exception_id,
            accepted=accepted,
            reason=reason,
            status=status,
        )
    )


def apply_result(ctx: Engine, s: Shard, ev: ActionSucceeded | ActionFailed, now: float) -> None:
    """An executor's result: the action's final status, and the type's breaker. The action is
    found under the result's ``order_id`` (the action event's, which the executor echoes)."""
    if not isinstance(s, ActionShard):
        return
    if s.legacy is not None:
        migrate(ctx, s)
    r = _records(ctx, ev.order_id, "", now, create=False)
    rec = None if r is None else r.actions.get(ev.action_id)
    if r is None or rec is None or rec["status"] != "requested":
        return  # unknown, or already settled: a result read again counts once
    failed = type(ev) is ActionFailed
    _set(ctx, r, rec, "failed" if failed else "succeeded", now)
    kind = rec["type"]
    last = [*s.results.get(kind, ()), int(failed)][-BREAKER_OF:]
    s.results[kind] = last
    if sum(last) >= BREAKER_FAILED and s.paused_until.get(kind, float("-inf")) <= now:
        s.paused_until[kind] = now + BREAKER_PAUSE
        ctx.schedule(s, BREAKER + kind, now + BREAKER_PAUSE)


def on_deadline(ctx: Engine, s: Shard, name: str, due: float, now: float) -> None:
    if isinstance(s, ActionRecords) and name.startswith(EXPIRY):
        rec = s.actions.get(name[len(EXPIRY) :])
        if rec is not None and rec["status"] == "awaiting_approval":
            _set(ctx, s, rec, "expired", due)
    elif isinstance(s, ActionShard) and name.startswith(EXPIRY):
        # an expiry of the earlier layout, scheduled on g:actions: its record moves, then expires
        rec = (s.legacy or {}).get("actions", {}).get(name[len(EXPIRY) :])
        migrate(ctx, s)
        if rec is not None:
            r = _records(ctx, rec["order_id"], rec["exception_id"], due)
            assert r is not None
            on_deadline(ctx, r, name, due, now)
    elif isinstance(s, ActionShard) and name.startswith(BREAKER):
        # closed again: the pause is over, and its failures are not held against the next ones
        kind = name[len(BREAKER) :]
        s.paused_until.pop(kind, None)
        s.results.pop(kind, None)
        ctx.dirty.add(s.key)


def migrate(ctx: Engine, s: ActionShard) -> None:
    """Move the records of a ``g:actions`` written by the earlier layout (every action in it)
    to their orders' records, with their expiry timers and holds, once: an upgrade keeps every
    action's status, so none is requested twice. Idempotent (a failed step repeats it)."""
    legacy, s.legacy = s.legacy, None
    ctx.dirty.add(s.key)
    if not legacy:
        return
    for aid, rec in legacy["actions"].items():
        r = _records(ctx, rec.get("order_id"), rec["exception_id"], float(rec.get("at") or 0.0))
        assert r is not None
        r.actions.setdefault(aid, rec)
        due = s.timers.get(EXPIRY + aid)
        if due is not None:
            ctx.unschedule(s, EXPIRY + aid)
            ctx.schedule(r, EXPIRY + aid, due)
    for order_id, holds in legacy["holds"].items():
        r = _records(ctx, order_id, "", 0.0)
        assert r is not None
        for exception_id, hold in holds.items():
            r.holds.setdefault(exception_id, list(hold))


def paused_types(s: Shard | None, now: float) -> list[str]:
    """The action types whose breaker is open at ``now`` (a metric and an alert live)."""
    if not isinstance(s, ActionShard):
        return []
    return sorted(k for k, until in s.paused_until.items() if until > now)


__all__ = ["ACTIONS", "action_id"]
