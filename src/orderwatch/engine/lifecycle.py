"""Raising, escalating and resolving exceptions: the lifecycle of CONTRACT sections 2 and 6.

Rules decide *whether* something is wrong; this module decides what that means on the wire: at
most one open exception per (rule_id, subject), a stable ``exception_id`` derived from the input
(never from a counter or the wall clock, so a restart or a replay gives the same ids), escalation
deadlines, and summaries that carry no personal data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from orderwatch.engine.catalog import MAX_ESCALATION_LEVEL, Rule
from orderwatch.engine.params import as_raised
from orderwatch.engine.state import NOTHING_OPEN, Open, Shard, open_mapping
from orderwatch.events.exception import Evidence, ExceptionEvent, State

_NAMESPACE = uuid.UUID("6f1c1f4e-0b7e-4d1e-9a55-6f7264657277")  # "orderw" in the tail

ESCALATION = "esc|"


def exception_id(rule_id: str, subject: str, anchor: str) -> str:
    """A UUIDv5 of what identifies the exception in the input: same input, same id, anywhere."""
    return str(uuid.uuid5(_NAMESPACE, f"{rule_id}|{subject}|{anchor}"))


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def iso(ts: float) -> str:
    """RFC 3339 in UTC with a ``Z``: the form every time in summaries and evidence takes."""
    text = to_datetime(ts).isoformat()
    return text.replace("+00:00", "Z")


#: Notifications whose anchor is the triggering event itself (a new occurrence after a resolve).
EACH_EVENT = frozenset({"order.creation_failed"})

#: Deadline name prefixes of the lifecycle's own timers (``rule_id|subject`` follows):
#: escalation, the acknowledgement timeout and the end of a snooze.
ACK_TIMEOUT = "ack|"
SNOOZE_END = "snz|"
TIMERS = (ESCALATION, ACK_TIMEOUT, SNOOZE_END)
#: Resolved exceptions kept per shard for a comment or a reopen; beyond it the oldest go.
MAX_CLOSED = 50


def _mark_done(shard: Shard, ex_id: str) -> None:
    if shard.done is None:
        shard.done = {ex_id}
    else:
        shard.done.add(ex_id)


class _Template(dict[str, Any]):
    """Summary values: a missing or unknown (None) one reads "?", never "None"."""

    def __init__(self, values: dict[str, Any], **extra: Any) -> None:
        super().__init__(
            {k: "?" if v is None else v for k, v in values.items()},
            **{k: "?" if v is None else v for k, v in extra.items()},
        )

    def __missing__(self, key: str) -> str:
        return "?"


def _as_is(shard: Shard, rule: Rule, at: float) -> Rule:
    return rule


class Lifecycle:
    """Turns rule decisions into exception events and keeps the shards' lifecycle state.

    ``schedule`` is the engine's deadline index: the lifecycle registers escalation deadlines in
    it exactly as rules register timeouts, so one sweep serves both. v2 adds the operators'
    statuses (``engine/operator.py`` applies their commands through the methods below) and
    inhibition (``engine/inhibition.py``): an exception is open in ``Shard.open`` whatever its
    status until it is resolved, then kept in ``Shard.closed``.
    """

    def __init__(
        self,
        rules: dict[str, Rule],
        schedule: Callable[[Shard, str, float], None],
        unschedule: Callable[[Shard, str], None],
    ) -> None:
        from orderwatch.engine.inhibition import Inhibition

        self.rules = rules
        self._schedule = schedule
        self._unschedule = unschedule
        self.out: list[ExceptionEvent] = []
        #: the rule as it applies to a shard's subject (overrides, calendars: ``engine.tuning``)
        self.effective: Callable[[Shard, Rule, float], Rule] = _as_is
        self.inhibition = Inhibition(rules)
        #: the time of the input being applied (an event's ``occurred_at``, a deadline's due
        #: time), set by the engine: a reopened exception is resolved only by a later one
        self.at = float("-inf")
        #: raises and resolves asked for so far (those that could change something): a caller
        #: that compares it before and after a handler knows whether the handler may have
        #: changed the shard's open or done exceptions (``orders._status_moved``)
        self.changes = 0

    def is_open(self, shard: Shard, rule_id: str, subject: str) -> bool:
        return f"{rule_id}|{subject}" in shard.open

    def raise_(
        self,
        shard: Shard,
        rule_id: str,
        subject: str,
        anchor: str,
        event_time: float,
        now: float,
        event_ids: list[str],
        values: dict[str, Any],
        *,
        order_id: str | None = None,
        sku: str | None = None,
        warehouse_id: str | None = None,
    ) -> bool:
        """Raise once; returns whether an event was produced (False if disabled or already)."""
        rule = self.rules.get(rule_id)
        if rule is None or not rule.enabled:
            return False
        self.changes += 1
        key = f"{rule_id}|{subject}"
        ex_id = exception_id(rule_id, subject, anchor)
        current = shard.open.get(key)
        if current is not None:
            # one open occurrence per (rule, subject): this trigger raises nothing. A
            # notification's trigger is remembered, so that read again after a person resolved
            # the open one (a re-delivery) it cannot start a new occurrence: only a trigger never
            # read before does (CONTRACT section 8). Rules with a resolving condition re-judge
            # their state instead (a second late payment is raised once the first is refunded)
            if current.exception_id != ex_id and not (shard.done and ex_id in shard.done):
                if not rule.resolvable:
                    _mark_done(shard, ex_id)
                elif current.absorbed is None:
                    # kept with the open one: done if a person resolves it (the condition may
                    # still hold then, and a re-delivery of this trigger must raise nothing)
                    current.absorbed = [ex_id]
                elif ex_id not in current.absorbed:
                    current.absorbed.append(ex_id)
            return False
        if shard.done and ex_id in shard.done:
            return False
        rule = self.effective(shard, rule, event_time)
        if rule.applied:  # the exception says which override and calendar applied
            values = {**values, **dict(rule.applied)}
        summary = rule.summary.format_map(_Template(values, subject=subject, order_id=order_id))
        op = Open(
            ex_id,
            rule_id,
            subject,
            event_time,
            0,
            summary,
            event_ids,
            values,
            order_id,
            sku,
            warehouse_id,
        )
        # notifications too: open until a person resolves them (v2), never escalated
        open_mapping(shard)[key] = op
        inhibitor = self.inhibition.inhibitor_of(shard, op)
        if inhibitor is not None:
            op.status, op.inhibited_by = "inhibited", inhibitor.exception_id
            self.emit(op, "inhibited", now)
            self.inhibition.opened(self, shard, op, now)  # inhibited is open: a chain holds
            return True
        if rule.escalate_after is not None:
            self._schedule(shard, ESCALATION + key, event_time + rule.escalate_after)
        self.emit(op, "raised", now)
        self.inhibition.opened(self, shard, op, now)
        return True

    def resolve(
        self,
        shard: Shard,
        rule_id: str,
        subject: str,
        now: float,
        event_ids: list[str],
        values: dict[str, Any] | None = None,
    ) -> bool:
        """Close an open exception because its resolving condition now holds."""
        if not shard.open:
            return False  # the common case, decided before building the key
        self.changes += 1
        key = f"{rule_id}|{subject}"
        op = shard.open.get(key)
        if op is None or self.rules.get(rule_id) is None or not self.rules[rule_id].resolvable:
            return False
        if op.reopened_after is not None and self.at <= op.reopened_after:
            # reopened by a person: only an event later than all its shard had read then
            # establishes the condition anew; an earlier one (a re-delivery) changes nothing
            return False
        if values:
            op.values = {**op.values, **values}
        op.event_ids = op.event_ids + [e for e in event_ids if e not in op.event_ids]
        self.close(shard, op, "rule", None, now)
        return True

    def close(
        self,
        shard: Shard,
        op: Open,
        by: str,
        resolution: str | None,
        now: float,
        note: str | None = None,
    ) -> None:
        """Resolve ``op`` (by its rule or by an operator): publish it, keep it in ``closed``."""
        key = f"{op.rule_id}|{op.subject}"
        del shard.open[key]
        if not shard.open:
            shard.open = NOTHING_OPEN  # its emptied table would stay allocated
        _mark_done(shard, op.exception_id)
        if by == "operator" and op.absorbed:
            for absorbed in op.absorbed:
                _mark_done(shard, absorbed)
        op.absorbed = None
        self.stop_timers(shard, key)
        op.status, op.resolved_by, op.resolution = "resolved", by, resolution
        op.acked_by = op.snoozed_until = None
        if shard.closed is None:
            shard.closed = {}
        closed = shard.closed
        closed.pop(op.exception_id, None)  # a reopened one goes to the end again
        closed[op.exception_id] = op
        if len(closed) > MAX_CLOSED:
            del closed[next(iter(closed))]
        self.emit(op, "resolved", now, note)
        self.inhibition.closed(self, shard, op, now)

    def stop_timers(self, shard: Shard, key: str) -> None:
        for prefix in TIMERS:
            self._unschedule(shard, prefix + key)

    def escalate_later(self, shard: Shard, op: Open, moment: float) -> None:
        """Open again (unacknowledged, snooze over, reopened, released): the next escalation is
        due ``escalate_after`` after ``moment``, at its current level."""
        rule = as_raised(self.rules[op.rule_id], op.values)
        if rule.escalate_after is not None and op.level < MAX_ESCALATION_LEVEL:
            self._schedule(
                shard, ESCALATION + f"{op.rule_id}|{op.subject}", moment + rule.escalate_after
            )

    def on_timer(self, shard: Shard, name: str, due: float, now: float) -> None:
        """One of the lifecycle's own deadlines passed (``TIMERS``)."""
        prefix, key = name[:4], name[4:]
        op = shard.open.get(key)
        if op is None:
            return
        if prefix == ESCALATION:
            self.escalate(shard, key, now, due)
        elif prefix == ACK_TIMEOUT and op.status == "acknowledged":
            op.status, op.acked_by = "open", None
            self.emit(op, "unacknowledged", now)
            self.escalate_later(shard, op, due)
        elif prefix == SNOOZE_END and op.status == "snoozed":
            op.status, op.acked_by, op.snoozed_until = "open", None, None
            self.emit(op, "unacknowledged", now)
            self.escalate_later(shard, op, due)

    def escalate(self, shard: Shard, key: str, now: float, due: float | None = None) -> None:
        """An escalation deadline passed while the exception is still open: one level up."""
        op = shard.open.get(key)
        if op is None or op.status != "open":
            return
        rule = as_raised(self.rules[op.rule_id], op.values)
        op.level += 1
        self.emit(op, "escalated", now)
        if op.level < MAX_ESCALATION_LEVEL and rule.escalate_after is not None:
            last = op.event_time + op.level * rule.escalate_after if due is None else due
            self._schedule(shard, ESCALATION + key, last + rule.escalate_after)

    def emit(self, op: Open, state: State, now: float, note: str | None = None) -> None:
        """Publish the next event of ``op`` (``seq`` + 1) as it now stands."""
        rule = as_raised(self.rules[op.rule_id], op.values)
        op.seq += 1
        self.out.append(
            ExceptionEvent.model_construct(
                exception_id=op.exception_id,
                rule_id=rule.rule_id,
                category=rule.category,
                severity=rule.severity,
                state=state,
                subject=op.subject,
                order_id=op.order_id,
                sku=op.sku,
                warehouse_id=op.warehouse_id,
                detected_at=to_datetime(now),
                event_time=to_datetime(op.event_time),
                summary=op.summary,
                evidence=Evidence.model_construct(
                    event_ids=list(op.event_ids), values=dict(op.values)
                ),
                owner=rule.owner,
                actions=list(rule.actions),
                escalation_level=op.level,
                seq=op.seq,
                status=op.status,  # type: ignore[arg-type]
                assignee=op.assignee,
                acknowledged_by=op.acked_by,
                snoozed_until=None if op.snoozed_until is None else to_datetime(op.snoozed_until),
                resolved_by=op.resolved_by,  # type: ignore[arg-type]
                resolution=op.resolution,  # type: ignore[arg-type]
                note=note,
                inhibited_by=op.inhibited_by,
            )
        )
