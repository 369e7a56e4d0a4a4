"""Reads the topics into the console's SQLite projection and sends people's commands.

The projector has no consumer group: it assigns itself every partition of the exceptions, commands,
command-results and actions topics and seeks to the offsets stored in its own database (the
beginning when the database is new), so each console replica keeps its own complete view and a
deleted database is rebuilt from the topics. Listeners (the server-sent events of open pages, a
command waiting for its reply) are told about each applied batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from orderwatch.console.settings import ConsoleSettings
from orderwatch.console.store import Changes, Store
from orderwatch.normalize import mask_text

log = structlog.get_logger("orderwatch.console")

Listener = Callable[[Changes], None]


def kafka_security(settings: ConsoleSettings) -> dict[str, Any]:
    """aiokafka client arguments for the configured TLS/SASL, as the worker builds them."""
    out: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        import ssl

        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
        if settings.ssl_certfile:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            )
        out["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        out["sasl_mechanism"] = settings.sasl_mechanism
        out["sasl_plain_username"] = settings.sasl_username
        out["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return out


@dataclass
class Projector:
    """Consumes the three topics into ``store``; ``caught_up`` is set once the backlog is read."""

    settings: ConsoleSettings
    store: Store
    listeners: list[Listener] = field(default_factory=list)
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    records: int = 0
    skipped: int = 0
    _task: asyncio.Task[None] | None = None
    _producer: Any = None

    @property
    def topics(self) -> tuple[str, str, str, str]:
        s = self.settings
        return (s.topic_exceptions, s.topic_commands, s.topic_command_results, s.topic_actions)

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        from orderwatch.broker import create_topics

        security = kafka_security(self.settings)
        try:
            # Tansu (and many managed clusters) do not auto-create: make the console's topics
            # exist, with the worker's partition count, if nobody made them yet.
            await create_topics(
                self.settings.bootstrap_servers,
                dict.fromkeys(self.topics, self.settings.partitions),
                security,
            )
        except Exception as exc:  # a cluster that forbids creating topics still works
            log.warning("console.create_topics_failed", error=str(exc))
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers, acks="all", **security
        )
        await self._producer.start()
        self._task = asyncio.create_task(self._run(security))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            await self._producer.stop()

    async def _run(self, security: dict[str, Any]) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.bootstrap_servers,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # a person waits on each hop (reply, then the event): fetch at least every 50 ms
                fetch_max_wait_ms=min(int(self.settings.fetch_max_wait * 1000), 50),
                **security,
            )
            try:
                await consumer.start()
                parts: list[Any] = []
                for topic in self.topics:
                    known = consumer.partitions_for_topic(topic)
                    if not known:
                        # metadata not there yet (a topic just created): never start without it,
                        # or that topic would silently never be read
                        await consumer._client.force_metadata_update()
                        known = consumer.partitions_for_topic(topic)
                    if not known:
                        raise RuntimeError(f"topic {topic} has no partitions yet")
                    parts.extend(TopicPartition(topic, p) for p in sorted(known))
                consumer.assign(parts)
                stored = self.store.offsets()
                for tp in parts:
                    if (tp.topic, tp.partition) in stored:
                        consumer.seek(tp, stored[(tp.topic, tp.partition)])
                    else:
                        await consumer.seek_to_beginning(tp)
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: retry, never die
                log.warning("console.projector_error", error=repr(exc))
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()

    async def _consume(self, consumer: Any) -> None:
        idle = 0
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not batch:
                idle += 1
                if idle >= 2 and not self.caught_up.is_set():
                    self.caught_up.set()
                continue
            idle = 0
            exceptions: list[dict[str, Any]] = []
            commands: list[dict[str, Any]] = []
            replies: list[dict[str, Any]] = []
            actions: list[dict[str, Any]] = []
            offsets: dict[tuple[str, int], int] = {}
            for tp, records in batch.items():
                target = {
                    self.settings.topic_exceptions: exceptions,
                    self.settings.topic_commands: commands,
                    self.settings.topic_actions: actions,
                }.get(tp.topic, replies)
                for record in records:
                    self.records += 1
                    try:
                        value = orjson.loads(record.value)
                        if not isinstance(value, dict) or not value.get("exception_id"):
                            raise ValueError("not an object with an exception_id")
                        if target is exceptions:
                            _check_exception(value)
                        elif target is actions:
                            _check_action(value)
                        target.append(value)
                    except (ValueError, TypeError, KeyError) as exc:
                        # the worker's DLQ already holds bad commands; here we only skip them
                        self.skipped += 1
                        log.warning(
                            "console.record_skipped",
                            topic=tp.topic,
                            partition=tp.partition,
                            offset=record.offset,
                            reason=str(exc),
                        )
                    offsets[(tp.topic, tp.partition)] = record.offset + 1
            changes = self.store.apply(exceptions, commands, replies, offsets, actions)
            self.store.analyze_if_grown()
            for listener in list(self.listeners):
                try:
                    listener(changes)
                except Exception as exc:  # one broken page must not stop the projection
                    log.warning("console.listener_error", error=repr(exc))

    # -- commands --------------------------------------------------------------------------

    async def send_command(
        self,
        exception: dict[str, Any],
        command_type: str,
        actor: str,
        extra: dict[str, Any],
        wait: float,
    ) -> tuple[str, dict[str, Any] | None]:
        """Produce one command (CONTRACT 8) and wait for its reply; (command_id, reply or None)."""
        command: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "type": command_type,
            "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "source": "console",
            "exception_id": exception["exception_id"],
            "rule_id": exception["rule_id"],
            "subject": exception["subject"],
            "actor": actor,
            "expected_status": exception["status"],
            **extra,
        }
        seen_seq = int(exception["seq"])

        def shown() -> bool:
            row = self.store.exception(command["exception_id"])
            return row is not None and int(row["seq"]) > seen_seq

        return await self._send(command, wait, shown)

    async def send_decision(
        self,
        exception: dict[str, Any],
        action: dict[str, Any],
        approve: bool,
        actor: str,
        note: str | None,
        wait: float,
    ) -> tuple[str, dict[str, Any] | None]:
        """Send ``command.approve`` / ``command.reject`` (CONTRACT 8, 10) for an action and wait
        for its reply and then for the action's own next event; (command_id, reply or None).

        No ``expected_status``: what is decided is the action, whose own status the engine
        checks (``invalid_transition`` unless awaiting approval); an acknowledge that changed the
        exception meanwhile must not make the approval ``stale``. A reject's ``note`` (the reason)
        is masked before it leaves, and the engine ignores it: it is for people reading the topic.
        """
        command: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "type": "command.approve" if approve else "command.reject",
            "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "source": "console",
            "exception_id": exception["exception_id"],
            "rule_id": exception["rule_id"],
            "subject": exception["subject"],
            "actor": actor,
            "action_id": action["action_id"],
        }
        if note:
            command["note"] = mask_text(note)
        before = (action["status"], action["at"])

        def shown() -> bool:
            row = self.store.action(action["action_id"])
            return row is not None and (row["status"], row["at"]) != before

        return await self._send(command, wait, shown)

    async def _send(
        self, command: dict[str, Any], wait: float, shown: Callable[[], bool]
    ) -> tuple[str, dict[str, Any] | None]:
        """Produce ``command``, wait for its reply, then (accepted) until ``shown()`` holds."""
        command_id = str(command["event_id"])
        loop = asyncio.get_running_loop()
        replied: asyncio.Future[dict[str, Any]] = loop.create_future()
        seen: asyncio.Future[None] = loop.create_future()

        def listener(changes: Changes) -> None:
            for reply in changes.replies:
                if reply.get("command_id") == command_id and not replied.done():
                    replied.set_result(reply)
            if not seen.done() and shown():
                seen.set_result(None)

        self.listeners.append(listener)
        try:
            await self._producer.send_and_wait(
                self.settings.topic_commands,
                orjson.dumps(command),
                key=str(command["exception_id"]).encode(),
            )
            deadline = loop.time() + wait
            try:
                reply = await asyncio.wait_for(replied, wait)
            except TimeoutError:
                return command_id, None
            if reply.get("accepted"):
                # the reply and the event it caused travel on two topics: show the page once
                # both are read, so the person sees the new state, not the old one
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(seen, max(deadline - loop.time(), 0.1))
            return command_id, reply
        finally:
            self.listeners.remove(listener)


def _check_action(value: dict[str, Any]) -> None:
    for key in ("action_id", "type", "status", "at"):
        if not isinstance(value.get(key), str):
            raise ValueError(f"action event without {key}")
    datetime.fromisoformat(str(value["at"]).replace("Z", "+00:00"))
    if value.get("params") is not None and not isinstance(value["params"], dict):
        raise ValueError("action event whose params are not an object")


def _check_exception(value: dict[str, Any]) -> None:
    for key in ("rule_id", "severity", "state", "detected_at"):
        if not isinstance(value.get(key), str):
            raise ValueError(f"exception event without {key}")
    datetime.fromisoformat(str(value["detected_at"]).replace("Z", "+00:00"))
