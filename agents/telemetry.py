"""Mirror what the shell does into Prometheus metrics, and serve them.

Hooks are called from the shell's synchronous paths, so they only touch in-memory metric objects.
Gauges that need a walk over the state (open exceptions, shard counts) are refreshed on a slow
period instead of per event, so a million open orders do not cost a walk per second.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from orderwatch.agents.faust_internals import read_offsets
from orderwatch.engine import Engine
from orderwatch.engine.orders import TIMEOUTS
from orderwatch.engine.silence import SilenceMonitor
from orderwatch.engine.state import ACTION_RECORDS
from orderwatch.events.commands import COMMAND_CLASSES, CommandReply
from orderwatch.events.exception import ExceptionEvent
from orderwatch.events.inbound import InboundEvent
from orderwatch.metrics import OPEN_STATUSES, STATE_SHARD_KINDS, Metrics

_TIMEOUT_RULES = frozenset(TIMEOUTS) | {"inventory.sync_drift", "system.source_silent"}
_SHARD_KIND = {"o:": "order", "s:": "stock", "a:": "address", "p:": "phone", "c:": "customer"}


def shard_kind(key: str) -> str:
    """The ``kind`` label of ``orderwatch_state_shards`` for a shard key: an order's action
    records (``g:actions/<order_id>``) are ``actions``, the other global shards ``rates``."""
    if key.startswith(ACTION_RECORDS):
        return "actions"
    return _SHARD_KIND.get(key[:2], "rates")


#: How many acknowledged exception_ids are remembered, so only the first acknowledgement of an
#: exception counts towards the time to acknowledge (a repeat restarts ack_timeout, no more).
ACKED_MEMORY = 100_000


class CountingEngine(Engine):
    """The engine, telling ``on_reply`` each command's type with its reply.

    A reply names its command by id only (CONTRACT section 8), and the worker that applies a
    command is the one that replies to it, so the type is noted where the engine reads the
    command and paired with the reply it produces (parked commands too, later).
    """

    def __init__(
        self, *args: Any, on_reply: Callable[[str, CommandReply], None], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_reply = on_reply
        self._command_types: dict[str, str] = {}

    def step(
        self, event: InboundEvent, now: datetime | float, only: Iterable[str] | None = None
    ) -> list[ExceptionEvent]:
        if type(event) in COMMAND_CLASSES:
            self._command_types[event.event_id] = event.type
        return super().step(event, now, only)

    def take_replies(self) -> list[CommandReply]:
        replies = super().take_replies()
        for reply in replies:
            self._on_reply(self._command_types.pop(reply.command_id, "unknown"), reply)
        return replies


class Telemetry:
    """Hooks for the shell plus a periodic refresh of state gauges."""

    def __init__(self, metrics: Metrics, wall_clock: bool, lag_topics: Iterable[str] = ()) -> None:
        self.metrics = metrics
        self.wall_clock = wall_clock
        #: topics whose lag means work waiting (inputs and the shard topic); a changelog is only
        #: read during recovery, so its "lag" never drains and must not reach the lag alert
        self.lag_topics = frozenset(lag_topics)
        self._last_refresh = 0.0
        # labelled children looked up once: ``labels()`` costs more than the increment itself,
        # and ``on_event`` runs for every message read
        self._consumed: dict[tuple[str, str], Any] = {}
        self._last_seen: dict[str, Any] = {}
        self._items: dict[str, int] = {}
        self._tally: dict[tuple[str, str], int] = {}
        self._seen: dict[str, float] = {}
        self._acked: OrderedDict[str, None] = OrderedDict()

    def on_event(self, topic: str, event: InboundEvent, now: float) -> None:
        """Tally a valid event read; ``flush`` (after each router batch) moves the tallies out.

        A prometheus_client increment takes a lock: per event, the counter and the gauge were
        a twentieth of the worker's time.
        """
        key = (topic, event.type)
        tally = self._tally
        tally[key] = tally.get(key, 0) + 1
        self._seen[topic] = now
        if self.wall_clock:
            self.metrics.event_time_lag.observe(max(0.0, now - event.occurred_ts))

    def flush(self) -> None:
        """Add the tallied events to their counters and stamp each topic's last event."""
        m = self.metrics
        for (topic, type_), count in self._tally.items():
            counter = self._consumed.get((topic, type_))
            if counter is None:
                counter = self._consumed[(topic, type_)] = m.events_consumed.labels(
                    topic=topic, type=type_
                )
            counter.inc(count)
        self._tally.clear()
        for topic, now in self._seen.items():
            seen = self._last_seen.get(topic)
            if seen is None:
                seen = self._last_seen[topic] = m.last_event_timestamp.labels(topic=topic)
            seen.set(now)
        self._seen.clear()

    def stages(self, queued: int, applied: int, copies: int = 0) -> None:
        """Bring the shard-item counters up to the shell's running totals (each timer tick)."""
        items = self.metrics.shard_items
        for stage, total in (("routed", queued), ("applied", applied), ("copy", copies)):
            behind = total - self._items.get(stage, 0)
            if behind > 0:
                items.labels(stage=stage).inc(behind)
                self._items[stage] = total

    def on_internal_error(self, stage: str, exception: str) -> None:
        self.metrics.processing_errors.labels(stage=stage, exception=exception).inc()

    def on_invalid(self, topic: str, reason: str) -> None:
        self.metrics.invalid_messages.labels(topic=topic, reason=reason).inc()
        self.metrics.last_event_timestamp.labels(topic=topic).set(time.time())

    def on_exception(self, exc: ExceptionEvent, arrival: float | None) -> None:
        """Count it; time it from its trigger's arrival (kind=event) or its deadline (timeout)."""
        m = self.metrics
        m.exceptions_published.labels(
            rule_id=exc.rule_id, severity=exc.severity, owner=exc.owner, state=exc.state
        ).inc()
        if exc.state != "raised":
            self._response_times(exc)
            return
        now = time.time()
        if arrival is not None:
            m.detection_latency.labels(kind="event").observe(max(0.0, now - arrival))
        elif self.wall_clock and exc.rule_id in _TIMEOUT_RULES:
            m.detection_latency.labels(kind="timeout").observe(
                max(0.0, now - exc.event_time.timestamp())
            )

    def _response_times(self, exc: ExceptionEvent) -> None:
        """MTTA at an exception's first acknowledgement, MTTR at its resolution."""
        if exc.state == "acknowledged":
            if exc.exception_id in self._acked:
                return
            self._acked[exc.exception_id] = None
            if len(self._acked) > ACKED_MEMORY:
                self._acked.popitem(last=False)
            took = (exc.detected_at - exc.event_time).total_seconds()
            self.metrics.time_to_acknowledge.labels(rule_id=exc.rule_id, owner=exc.owner).observe(
                max(0.0, took)
            )
        elif exc.state == "resolved":
            took = (exc.detected_at - exc.event_time).total_seconds()
            self.metrics.time_to_resolve.labels(
                rule_id=exc.rule_id, owner=exc.owner, resolved_by=exc.resolved_by or "rule"
            ).observe(max(0.0, took))

    def on_reply(self, command_type: str, reply: CommandReply) -> None:
        """One answered command, by type and result (accepted or the rejection's reason)."""
        result = "accepted" if reply.accepted else (reply.reason or "rejected")
        self.metrics.commands.labels(type=command_type, result=result).inc()

    def engine(self, *args: Any, **kwargs: Any) -> Engine:
        """An engine whose command replies are counted here (see ``CountingEngine``)."""
        return CountingEngine(*args, on_reply=self.on_reply, **kwargs)

    def on_revoked(self, topic_partitions: Iterable[tuple[str, int]]) -> None:
        """Drop lag series of partitions this worker gave away, so old lag cannot linger."""
        for topic, partition in topic_partitions:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(topic, str(partition))

    def silence(self, monitor: SilenceMonitor | None) -> None:
        """1 per silent stream or source, 0 once it flows again."""
        if monitor is None:
            return
        for subject, is_silent in monitor.status().items():
            self.metrics.source_silent.labels(source=subject).set(1 if is_silent else 0)

    def refresh(self, engines: Iterable[Engine], consumer: Any, period: float = 10.0) -> None:
        """Walk the state for the gauges at most once per ``period`` seconds."""
        now = time.monotonic()
        if now - self._last_refresh < period:
            return
        self._last_refresh = now
        m = self.metrics
        kinds: Tally[str] = Tally()
        open_by_rule: Tally[str] = Tally()
        by_status: Tally[tuple[str, str]] = Tally()
        deadlines = 0
        rules: set[str] = set()
        for engine in engines:
            rules.update(engine.rules)
            for key, shard in engine.shards.items():
                kinds[shard_kind(key)] += 1
                deadlines += len(shard.deadlines)
                for op in shard.open.values():
                    open_by_rule[op.rule_id] += 1
                    by_status[(op.rule_id, op.status)] += 1
        for kind in STATE_SHARD_KINDS:
            m.state_shards.labels(kind=kind).set(kinds.get(kind, 0))
        for rule_id in rules:
            m.open_exceptions.labels(rule_id=rule_id).set(open_by_rule.get(rule_id, 0))
            for status in OPEN_STATUSES:
                m.exceptions_by_status.labels(rule_id=rule_id, status=status).set(
                    by_status.get((rule_id, status), 0)
                )
        m.pending_deadlines.set(deadlines)
        self._consumer_lag(consumer)

    def _consumer_lag(self, consumer: Any) -> None:
        try:
            assignment = consumer.assignment()
            read = read_offsets(consumer)
            for tp in assignment:
                if tp.topic not in self.lag_topics:
                    continue
                high = consumer.highwater(tp)
                if high is None:
                    continue
                position = read.get(tp)
                lag = high - (position + 1) if position is not None else high
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(0, lag)
                )
        except Exception:  # lag is best effort: never break the sweep for it
            return
