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


#: Notifications the contract raises for each triggering event rather than once per subject.
EACH_EVENT = frozenset({"order.creation_failed"})


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
    it exactly as rules register timeouts, so one sweep serves both.
    """

    def __init__(
        self,
        rules: dict[str, Rule],
        schedule: Callable[[Shard, str, float], None],
        unschedule: Callable[[Shard, str], None],
    ) -> None:
        self.rules = rules
        self._schedule = schedule
        self._unschedule = unschedule
        self.out: list[ExceptionEvent] = []
        #: the rule as it applies to a shard's subject (overrides, calendars: ``engine.tuning``)
        self.effective: Callable[[Shard, Rule, float], Rule] = _as_is

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
        key = f"{rule_id}|{subject}"
        if key in shard.open:
            return False
        rule = self.effective(shard, rule, event_time)
        if rule.applied:  # the exception says which override and calendar applied
            values = {**values, **dict(rule.applied)}
        ex_id = exception_id(rule_id, subject, anchor)
        # a notification is never resolved, so it stays "open" for good: at most one per
        # (rule, subject), whatever triggers it later (a second payment, another regression),
        # except the rules the contract raises for each event
        once = not rule.resolvable and rule_id not in EACH_EVENT
        if shard.done and (ex_id in shard.done or (once and key in shard.done)):
            return False
        summary = rule.summary.format_map(_Template(values, subject=subject, order_id=order_id))
        if rule.resolvable:
            open_mapping(shard)[key] = Open(
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
            if rule.escalate_after is not None:
                self._schedule(shard, ESCALATION + key, event_time + rule.escalate_after)
        else:
            _mark_done(shard, key if once else ex_id)
        self._emit(
            rule,
            ex_id,
            "raised",
            0,
            subject,
            event_time,
            now,
            summary,
            event_ids,
            values,
            order_id,
            sku,
            warehouse_id,
        )
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
        key = f"{rule_id}|{subject}"
        op = shard.open.pop(key, None)
        if op is None:
            return False
        if not shard.open:
            shard.open = NOTHING_OPEN  # its emptied table would stay allocated
        _mark_done(shard, op.exception_id)
        self._unschedule(shard, ESCALATION + key)
        rule = as_raised(self.rules[rule_id], op.values)
        merged = dict(op.values)
        merged.update(values or {})
        self._emit(
            rule,
            op.exception_id,
            "resolved",
            op.level,
            op.subject,
            op.event_time,
            now,
            op.summary,
            op.event_ids + [e for e in event_ids if e not in op.event_ids],
            merged,
            op.order_id,
            op.sku,
            op.warehouse_id,
        )
        return True

    def escalate(self, shard: Shard, key: str, now: float) -> None:
        """An escalation deadline passed while the exception is still open: one level up."""
        op = shard.open.get(key)
        if op is None:
            return
        rule = as_raised(self.rules[op.rule_id], op.values)
        op.level += 1
        self._emit(
            rule,
            op.exception_id,
            "escalated",
            op.level,
            op.subject,
            op.event_time,
            now,
            op.summary,
            op.event_ids,
            op.values,
            op.order_id,
            op.sku,
            op.warehouse_id,
        )
        if op.level < MAX_ESCALATION_LEVEL and rule.escalate_after is not None:
            self._schedule(
                shard, ESCALATION + key, op.event_time + (op.level + 1) * rule.escalate_after
            )

    def _emit(
        self,
        rule: Rule,
        ex_id: str,
        state: State,
        level: int,
        subject: str,
        event_time: float,
        now: float,
        summary: str,
        event_ids: list[str],
        values: dict[str, Any],
        order_id: str | None,
        sku: str | None,
        warehouse_id: str | None,
    ) -> None:
        self.out.append(
            ExceptionEvent.model_construct(
                exception_id=ex_id,
                rule_id=rule.rule_id,
                category=rule.category,
                severity=rule.severity,
                state=state,
                subject=subject,
                order_id=order_id,
                sku=sku,
                warehouse_id=warehouse_id,
                detected_at=to_datetime(now),
                event_time=to_datetime(event_time),
                summary=summary,
                evidence=Evidence.model_construct(event_ids=list(event_ids), values=dict(values)),
                owner=rule.owner,
                actions=list(rule.actions),
                escalation_level=level,
            )
        )
