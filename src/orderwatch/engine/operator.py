"""Operator commands (CONTRACT section 8), applied by the pure engine like any other input.

A command reaches the shard that owns its exception (``route``: the shard is named by the rule
and the subject the command copies from the exception), is checked in the contract's order
(``unknown_exception``, ``invalid_command``, ``stale``, ``invalid_transition``: the first that
fails is the reason, and a rejected command changes nothing), and, accepted, publishes exactly one
exception event. Its reply is kept in the shard under the command's ``event_id``: a command read
again (at-least-once delivery, a replay of a mixed file, a client retrying) gets the same reply,
byte for byte, and has no second effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orderwatch.engine import orders
from orderwatch.engine.actions import DECISIONS, decide
from orderwatch.engine.catalog import NOT_PER_ORDER, RULE_DEFS
from orderwatch.engine.lifecycle import ACK_TIMEOUT, ESCALATION, SNOOZE_END
from orderwatch.engine.state import (
    FAILURE,
    GLOBAL,
    NOWHERE,
    ORDER,
    STOCK,
    Open,
    OrderShard,
    Shard,
    open_mapping,
)
from orderwatch.events.commands import (
    Command,
    CommandAcknowledge,
    CommandAssign,
    CommandComment,
    CommandReopen,
    CommandReply,
    CommandResolve,
    CommandSnooze,
    CommandUnacknowledge,
)
from orderwatch.events.exception import State
from orderwatch.normalize import mask_text

if TYPE_CHECKING:
    from orderwatch.engine.core import Engine

#: Replies kept per shard; beyond it the oldest go (a client retrying that late gets
#: ``unknown_exception`` or a fresh judgement; a re-delivery comes within seconds).
MAX_REPLIES = 500

_GLOBAL_RULES = frozenset({"payment.success_rate_drop", "order.creation_failure_spike"})


def route(command: Command) -> str:
    """The shard key that owns the command's exception, from its rule and subject.

    ``system.source_silent`` is the live worker's own health monitor, not shard state (replay
    never raises it): its commands go nowhere and are answered ``unknown_exception``.
    """
    rule_id, subject = command.rule_id, command.subject
    if not isinstance(rule_id, str) or not isinstance(subject, str) or not subject:
        return NOWHERE + command.exception_id
    if rule_id == "inventory.sync_drift":
        return STOCK + subject
    if rule_id in _GLOBAL_RULES:
        return GLOBAL
    if rule_id == "order.creation_failed":
        return FAILURE + subject
    if rule_id in RULE_DEFS and rule_id not in NOT_PER_ORDER:
        return ORDER + subject
    return NOWHERE + command.exception_id


def _find(shard: Shard | None, cmd: Command) -> Open | None:
    """The exception with the command's id, rule and subject, open or resolved."""
    if shard is None:
        return None
    op = shard.open.get(f"{cmd.rule_id}|{cmd.subject}") if shard.open else None
    if op is not None and op.exception_id == cmd.exception_id:
        return op
    op = shard.closed.get(cmd.exception_id) if shard.closed else None
    if op is not None and op.rule_id == cmd.rule_id and op.subject == cmd.subject:
        return op
    return None


def _latest(shard: Shard, op: Open) -> bool:
    """Whether a resolved ``op`` is the latest occurrence of its rule and subject."""
    if f"{op.rule_id}|{op.subject}" in shard.open:
        return False
    assert shard.closed is not None
    later = False
    for other in shard.closed.values():  # in closing order, which is raising order
        if other is op:
            later = True
        elif later and other.rule_id == op.rule_id and other.subject == op.subject:
            return False
    return True


def apply(ctx: Engine, shard: Shard | None, cmd: Command, at: float) -> None:
    """Judge and apply one command at the clock ``at``; the reply goes to ``ctx.replies``."""
    if shard is not None and shard.replies and cmd.event_id in shard.replies:
        _send(ctx, cmd.event_id, shard.replies[cmd.event_id])
        return
    op = _find(shard, cmd)
    if op is None:
        reply = [cmd.exception_id, False, "unknown_exception", None]
    else:
        assert shard is not None
        reason = _judge(shard, op, cmd, at)
        if reason == "invalid_transition" and type(cmd) in DECISIONS:
            # v2: whether its action awaits approval is the action shard's to say; it replies
            decide(ctx, cmd, op.status, at, op.order_id)
            return
        if reason is None:
            _effect(ctx, shard, op, cmd, at)
        reply = [cmd.exception_id, reason is None, reason, op.status]
    if shard is not None:
        _remember(shard, cmd.event_id, reply)
        if ctx.track_dirty:
            ctx.dirty.add(shard.key)
    _send(ctx, cmd.event_id, reply)


def _judge(shard: Shard, op: Open, cmd: Command, at: float) -> str | None:
    """The reason a command is rejected, in the contract's order after ``unknown_exception``."""
    if cmd.problem(at) is not None:
        return "invalid_command"
    if cmd.expected_status is not None and cmd.expected_status != op.status:
        return "stale"
    allowed = cmd.accepted_in
    if allowed is not None and op.status not in allowed:
        return "invalid_transition"
    if type(cmd) is CommandReopen and not _latest(shard, op):
        return "invalid_transition"
    if type(cmd) not in _EFFECTS:
        # approve / reject: no remediation action awaits approval here (section 10 is not
        # built yet), and one "not awaiting approval" is rejected as invalid_transition
        return "invalid_transition"
    return None


def _remember(shard: Shard, command_id: str, reply: list[Any]) -> None:
    if shard.replies is None:
        shard.replies = {}
    replies = shard.replies
    replies[command_id] = reply
    if len(replies) > MAX_REPLIES:
        del replies[next(iter(replies))]


def _send(ctx: Engine, command_id: str, reply: list[Any]) -> None:
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


# --- the effects of accepted commands ----------------------------------------------------------


def _key(op: Open) -> str:
    return f"{op.rule_id}|{op.subject}"


def _note(cmd: Command) -> str | None:
    note = getattr(cmd, "note", None)
    return mask_text(note) if isinstance(note, str) else None


def _leave_attention(ctx: Engine, shard: Shard, op: Open, moment: float) -> None:
    """Acknowledged or snoozed -> open: timers stop, escalation resumes ``escalate_after`` on."""
    key = _key(op)
    ctx.unschedule(shard, ACK_TIMEOUT + key)
    ctx.unschedule(shard, SNOOZE_END + key)
    op.status, op.acked_by, op.snoozed_until = "open", None, None
    ctx.life.escalate_later(shard, op, moment)


def _acknowledge(ctx: Engine, shard: Shard, op: Open, cmd: Any, at: float) -> State:
    key = _key(op)
    ctx.unschedule(shard, ESCALATION + key)
    op.status, op.acked_by = "acknowledged", cmd.actor
    timeout = ctx.rules[op.rule_id].ack_timeout
    if timeout is not None:
        ctx.schedule(shard, ACK_TIMEOUT + key, at + timeout)
    return "acknowledged"


def _unacknowledge(ctx: Engine, shard: Shard, op: Open, cmd: Any, at: float) -> State:
    _leave_attention(ctx, shard, op, at)
    return "unacknowledged"


def _assign(ctx: Engine, shard: Shard, op: Open, cmd: Any, at: float) -> State:
    op.assignee = cmd.assignee
    if op.status == "snoozed":
        _leave_attention(ctx, shard, op, at)
    return "assigned"


def _snooze(ctx: Engine, shard: Shard, op: Open, cmd: Any, at: float) -> State:
    key = _key(op)
    end = cmd.snooze_end(at)
    ctx.unschedule(shard, ACK_TIMEOUT + key)
    op.status, op.snoozed_until = "snoozed", end
    ctx.schedule(shard, SNOOZE_END + key, end)
    return "snoozed"


def _comment(ctx: Engine, shard: Shard, op: Open, cmd: Any, at: float) -> State:
    return "commented"


def _resolve(ctx: Engine, shard: Shard, op: Open, cmd: Any, at: float) -> State:
    ctx.life.close(shard, op, "operator", cmd.resolution, at, _note(cmd))
    return "resolved"


def _reopen(ctx: Engine, shard: Shard, op: Open, cmd: Any, at: float) -> State:
    assert shard.closed is not None
    del shard.closed[op.exception_id]
    if not shard.closed:
        shard.closed = None
    op.status, op.resolved_by, op.resolution = "open", None, None
    # every event its shard has read was judged already: only a later one resolves it again
    op.reopened_after = shard.last_at
    open_mapping(shard)[_key(op)] = op
    ctx.life.escalate_later(shard, op, at)
    ctx.life.emit(op, "reopened", at, _note(cmd))
    # open again beside an open inhibitor (or as one): inhibition applies as on a raise
    inhibitor = ctx.life.inhibition.inhibitor_of(shard, op)
    if inhibitor is not None:
        ctx.life.stop_timers(shard, _key(op))
        op.status, op.inhibited_by = "inhibited", inhibitor.exception_id
        ctx.life.emit(op, "inhibited", at)
    else:
        ctx.life.inhibition.opened(ctx.life, shard, op, at)
    return "reopened"


#: command class -> its effect; returns the state to publish (resolve and reopen publish
#: themselves: a resolve may release inhibited exceptions, whose events come after its own)
_EFFECTS: dict[type, Any] = {
    CommandAcknowledge: _acknowledge,
    CommandUnacknowledge: _unacknowledge,
    CommandAssign: _assign,
    CommandSnooze: _snooze,
    CommandComment: _comment,
    CommandResolve: _resolve,
    CommandReopen: _reopen,
}
_PUBLISHES_ITSELF = frozenset({CommandResolve, CommandReopen})


def _effect(ctx: Engine, shard: Shard, op: Open, cmd: Command, at: float) -> None:
    state = _EFFECTS[type(cmd)](ctx, shard, op, cmd, at)
    if type(cmd) not in _PUBLISHES_ITSELF:
        ctx.life.emit(op, state, at, _note(cmd))
    if type(shard) is OrderShard:
        # a resolve or reopen changes what the order's timeouts derive from (an open or done
        # exception): re-derive them now, not at whichever event comes next (a re-delivered one
        # would then raise what the first reading left waiting)
        orders.refresh(ctx, shard)
    if ctx.track_dirty:
        ctx.dirty.add(shard.key)
