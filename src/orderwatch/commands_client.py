"""The operators' side of CONTRACT section 8, for people (``orderwatch ack ...``) and scripts.

Everything here speaks only the public topics, like any other team's tool would: it learns what is
open by reading ``order-exceptions`` from the beginning and folding the events by ``exception_id``
and ``seq``, sends a command to ``order-exception-commands`` keyed by ``exception_id``, and waits
for the reply with the command's id on ``order-exception-command-results``. Nothing reads the
worker's internal state, so the same commands work against any cluster the worker runs on.

The pure parts (``build_command``, ``fold``, ``select``) are separate from the Kafka calls so the
CLI's decisions can be tested without a broker; the Kafka calls are tested against the real one.
"""

from __future__ import annotations

import getpass
import io
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from orderwatch.errors import OrderwatchError
from orderwatch.events.commands import CommandReply
from orderwatch.events.exception import ExceptionEvent
from orderwatch.settings import Settings

#: The command types a person sends from the CLI (approve/reject decide section 10's actions).
CLI_COMMANDS = (
    "acknowledge",
    "unacknowledge",
    "assign",
    "snooze",
    "comment",
    "resolve",
    "reopen",
    "approve",
    "reject",
)
#: ``source`` of the commands this module sends (CONTRACT section 8: it names the tool).
SOURCE = "cli"

#: Order of the v1 states when two events of one exception carry the same ``seq`` (v1 events
#: have no ``seq``: the model defaults it to 1).
_V1_ORDER = {"raised": 0, "escalated": 1, "resolved": 2}


class CommandsClientError(OrderwatchError):
    """The command cannot be sent: unknown exception, no actor, broker unreachable."""


def resolve_actor(given: str | None, env: Mapping[str, str] | None = None) -> str:
    """Who sends the command: ``--actor``, else ``ORDERWATCH_ACTOR``, else the login name.

    A command without an actor is refused by the detector (``invalid_command``), so a missing one
    is reported here, before anything is sent.
    """
    env = os.environ if env is None else env
    for candidate in (given, env.get("ORDERWATCH_ACTOR"), env.get("USER"), env.get("LOGNAME")):
        if candidate and candidate.strip():
            return candidate.strip()
    if env is os.environ:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            pass
    raise CommandsClientError("no actor: pass --actor or set ORDERWATCH_ACTOR")


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_command(
    kind: str,
    exception_id: str,
    rule_id: str,
    subject: str,
    actor: str,
    *,
    expected_status: str | None = None,
    fields: Mapping[str, Any] | None = None,
    command_id: str | None = None,
    now: datetime | None = None,
    source: str = SOURCE,
) -> dict[str, Any]:
    """The JSON object of one command (envelope of section 1 plus section 8's fields).

    ``command_id`` becomes the ``event_id``: a script that retries with the same id gets the same
    reply and no second effect (the detector is idempotent by ``event_id``). Fields that are None
    are left out, so the detector judges exactly what the sender meant.
    """
    if kind not in CLI_COMMANDS:
        raise ValueError(f"unknown command {kind!r}")
    command: dict[str, Any] = {
        "event_id": command_id or f"cmd-{uuid.uuid4()}",
        "type": f"command.{kind}",
        "occurred_at": rfc3339(now or datetime.now(UTC)),
        "source": source,
        "exception_id": exception_id,
        "rule_id": rule_id,
        "subject": subject,
        "actor": actor,
    }
    if expected_status is not None:
        command["expected_status"] = expected_status
    for name, value in (fields or {}).items():
        if value is not None:
            command[name] = value
    return command


# --------------------------------------------------------------------------------------------
# What is open: the exceptions topic folded by exception_id (pure)


def _order(event: ExceptionEvent) -> tuple[int, int, int]:
    return (event.seq, _V1_ORDER.get(event.state, 1), event.escalation_level)


def fold(events: Iterable[ExceptionEvent]) -> dict[str, ExceptionEvent]:
    """The latest event of each exception, by ``seq`` (re-deliveries and reordering harmless)."""
    latest: dict[str, ExceptionEvent] = {}
    for event in events:
        seen = latest.get(event.exception_id)
        if seen is None or _order(event) > _order(seen):
            latest[event.exception_id] = event
    return latest


def status_of(event: ExceptionEvent) -> str:
    """The exception's status after ``event``; v1 events have none, so derive it."""
    if event.status is not None:
        return event.status
    return "resolved" if event.state == "resolved" else "open"


@dataclass(frozen=True)
class Filters:
    """What ``orderwatch exceptions`` keeps; empty tuples keep everything."""

    owners: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    include_resolved: bool = False

    def keep(self, event: ExceptionEvent) -> bool:
        status = status_of(event)
        if self.statuses:
            if status not in self.statuses:
                return False
        elif status == "resolved" and not self.include_resolved:
            return False
        if self.owners and event.owner not in self.owners:
            return False
        if self.severities and event.severity not in self.severities:
            return False
        return not self.rules or any(
            event.rule_id == r or (r.endswith(".") and event.rule_id.startswith(r))
            for r in self.rules
        )


_SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def select(latest: Mapping[str, ExceptionEvent], filters: Filters) -> list[ExceptionEvent]:
    """The exceptions ``filters`` keeps, most severe first, then oldest first."""
    kept = [e for e in latest.values() if filters.keep(e)]
    kept.sort(
        key=lambda e: (
            _SEVERITY_RANK.get(e.severity, 9),
            -e.escalation_level,
            e.event_time,
            e.exception_id,
        )
    )
    return kept


def row(event: ExceptionEvent) -> dict[str, Any]:
    """One exception as a script reads it (``--json``): what a command needs, plus context."""
    return {
        "exception_id": event.exception_id,
        "rule_id": event.rule_id,
        "subject": event.subject,
        "status": status_of(event),
        "state": event.state,
        "severity": event.severity,
        "owner": event.owner,
        "escalation_level": event.escalation_level,
        "seq": event.seq,
        "assignee": event.assignee,
        "acknowledged_by": event.acknowledged_by,
        "snoozed_until": rfc3339(event.snoozed_until) if event.snoozed_until else None,
        "inhibited_by": event.inhibited_by,
        "event_time": rfc3339(event.event_time),
        "summary": event.summary,
    }


# --------------------------------------------------------------------------------------------
# Kafka


@dataclass
class Topics:
    """Where the client reads and writes; from ``Settings`` (``ORDERWATCH_*``) by default."""

    bootstrap: str
    exceptions: str = "order-exceptions"
    commands: str = "order-exception-commands"
    results: str = "order-exception-command-results"
    kafka: dict[str, Any] = field(default_factory=dict)
    actions: str = "order-actions"

    @classmethod
    def from_settings(cls, settings: Settings, bootstrap: str | None = None) -> Topics:
        from orderwatch.alertmanager import kafka_security

        return cls(
            bootstrap=bootstrap or settings.bootstrap_servers,
            exceptions=settings.topic_exceptions,
            commands=settings.topic_commands,
            results=settings.topic_command_results,
            kafka=kafka_security(settings),
            actions=settings.topic_actions,
        )


async def read_exceptions(topics: Topics, stall_seconds: float = 30.0) -> list[ExceptionEvent]:
    """Every exception event on the topic, from its beginning to its end when we started.

    No consumer group: nothing is committed, nobody's offsets move. Messages that are not
    exception events are skipped (the report's reader counts them; here they only cost a line).
    """
    from orderwatch.reports.summary import ReadStats, ReportError, read_topic

    try:
        return await read_topic(
            topics.bootstrap,
            topics.exceptions,
            io.StringIO(),
            ReadStats(topics.exceptions),
            stall_seconds=stall_seconds,
            kafka=topics.kafka,
        )
    except ReportError as exc:
        raise CommandsClientError(str(exc)) from None


async def find_exception(topics: Topics, exception_id: str) -> ExceptionEvent | None:
    """The latest event of one exception on the topic (its ``rule_id`` and ``subject`` route a
    command), or None if the topic has never carried it."""
    return fold(e for e in await read_exceptions(topics) if e.exception_id == exception_id).get(
        exception_id
    )


@dataclass(frozen=True)
class ActionRef:
    """What an approve or reject needs to know of an action: the exception it belongs to."""

    action_id: str
    exception_id: str
    rule_id: str
    status: str


def latest_action(records: Iterable[bytes | None], action_id: str) -> ActionRef | None:
    """The latest status of one action among raw action events (CONTRACT 10), or None.

    Anything that is not an action event is skipped; of two statuses the later ``at`` wins.
    """
    found: tuple[str, ActionRef] | None = None
    for raw in records:
        try:
            doc = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError:
            continue
        if not isinstance(doc, dict) or doc.get("action_id") != action_id:
            continue
        exception_id, rule_id, status, at = (
            doc.get(k) for k in ("exception_id", "rule_id", "status", "at")
        )
        if not (
            isinstance(exception_id, str)
            and isinstance(rule_id, str)
            and isinstance(status, str)
            and isinstance(at, str)
        ):
            continue
        if found is None or at >= found[0]:
            found = (at, ActionRef(action_id, exception_id, rule_id, status))
    return None if found is None else found[1]


async def read_raw(topics: Topics, topic: str, stall_seconds: float = 30.0) -> list[bytes | None]:
    """Every record value of ``topic``, from its beginning to its end when we started.

    No consumer group. Each partition's end is the larger of ListOffsets' answer and the high
    watermark of the first fetch (Tansu answers ListOffsets with the start of the last batch).
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        bootstrap_servers=topics.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **topics.kafka,
    )
    values: list[bytes | None] = []
    try:
        await consumer.start()
        partitions = (
            consumer.partitions_for_topic(topic) if topic in await consumer.topics() else None
        )
        if not partitions:
            raise CommandsClientError(f"topic {topic!r} does not exist at {topics.bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        listed = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[Any, int] = {}
        remaining = set(tps)
        deadline = time.monotonic() + stall_seconds
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
            for tp in remaining:
                if tp not in ends and consumer.highwater(tp) is not None:
                    ends[tp] = max(listed[tp], consumer.highwater(tp))
            for tp, records in batches.items():
                values.extend(r.value for r in records if r.offset < ends.get(tp, listed[tp]))
            if batches:
                deadline = time.monotonic() + stall_seconds
            for tp in list(remaining):
                if tp in ends and await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if remaining and time.monotonic() > deadline:
                raise CommandsClientError(f"no progress on {topic!r} for {stall_seconds:.0f}s")
    except KafkaError as exc:
        raise CommandsClientError(f"Kafka at {topics.bootstrap}: {exc}") from None
    finally:
        await consumer.stop()
    return values


async def find_action(topics: Topics, action_id: str) -> ActionRef | None:
    """The latest status of one action on the actions topic, or None if it never carried it."""
    return latest_action(await read_raw(topics, topics.actions), action_id)


async def send_command(
    topics: Topics, command: Mapping[str, Any], wait: float | None = 30.0
) -> CommandReply | None:
    """Produce ``command`` keyed by its exception_id; return its reply, or None at the timeout.

    The replies topic is positioned at its end *before* the command is sent, so the reply cannot
    be missed; earlier replies read on the way are skipped by ``command_id``. ``wait`` (seconds)
    None sends without waiting (and returns None).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = None
    tps: list[TopicPartition] = []
    try:
        if wait is not None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=topics.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="latest",
                fetch_max_wait_ms=100,
                **topics.kafka,
            )
            await consumer.start()
            known = await consumer.topics()  # refreshes the metadata
            partitions = (
                consumer.partitions_for_topic(topics.results) if topics.results in known else None
            )
            if not partitions:
                raise CommandsClientError(
                    f"replies topic {topics.results!r} does not exist at {topics.bootstrap}"
                )
            tps = [TopicPartition(topics.results, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)  # resolve "end" now, not at the first fetch
        producer = AIOKafkaProducer(bootstrap_servers=topics.bootstrap, acks="all", **topics.kafka)
        try:
            await producer.start()
            await producer.send_and_wait(
                topics.commands,
                orjson.dumps(dict(command)),
                key=str(command["exception_id"]).encode(),
            )
        finally:
            await producer.stop()
        if consumer is None or wait is None:
            return None
        return await _await_reply(consumer, str(command["event_id"]), wait)
    except KafkaError as exc:
        raise CommandsClientError(f"Kafka at {topics.bootstrap}: {exc}") from None
    finally:
        if consumer is not None:
            await consumer.stop()


async def _await_reply(consumer: Any, command_id: str, within: float) -> CommandReply | None:
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        batches = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000) + 1)
        for records in batches.values():
            for record in records:
                reply = parse_reply(record.value)
                if reply is not None and reply.command_id == command_id:
                    return reply
    return None


def parse_reply(raw: bytes | None) -> CommandReply | None:
    """A reply from the results topic, or None for anything that is not one."""
    if raw is None:
        return None
    try:
        return CommandReply.model_validate_json(raw)
    except ValidationError:
        return None
