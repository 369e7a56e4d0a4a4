"""The imperative shell's logic: decode, route, feed the engine, publish, persist.

Kept free of Faust objects (it is handed plain values and send functions) so the same code runs in
the worker and in tests, and so every Faust pitfall is handled in ``app.py`` alone. Every method
here is synchronous on purpose: an engine step, the exceptions it yields and the changelog writes
of the shards it changed happen without an ``await`` in between, so the sweep timer and the agents
(one asyncio loop) can never interleave inside one state change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from orderwatch.engine import BROADCAST, Engine
from orderwatch.errors import EventValidationError
from orderwatch.events.codec import decode_event, encode_exception
from orderwatch.events.exception import ExceptionEvent
from orderwatch.events.inbound import InboundEvent

#: A DLQ copy keeps at most this much of a bad message (the reason headers say how big it was).
DLQ_MAX_BYTES = 64 * 1024

Headers = list[tuple[str, bytes]]
Send = Callable[..., Any]


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), which the producer applies to our shard keys."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def broadcast_key(partition: int) -> str:
    """Each partition of the shard topic keeps its own copy of the blacklist under this key."""
    return f"{BROADCAST}:{partition}"


def dlq_headers(
    reason: str, detail: str, topic: str, partition: int, offset: int, size: int
) -> Headers:
    """Dead-letter headers in Kafka Connect's ``__connect.errors.*`` convention, plus ours."""
    return [
        ("__connect.errors.topic", topic.encode()),
        ("__connect.errors.partition", str(partition).encode()),
        ("__connect.errors.offset", str(offset).encode()),
        ("__connect.errors.exception.class.name", reason.encode()),
        ("__connect.errors.exception.message", detail[:1000].encode("utf-8", "replace")),
        ("orderwatch.error.reason", reason.encode()),
        ("orderwatch.error.original_size", str(size).encode()),
    ]


def cloudevent_headers(exc: ExceptionEvent, source: str) -> Headers:
    """CloudEvents Kafka binary-mode headers; ``ce_id`` is stable per state change (dedupe key)."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", exc.change_id.encode()),
        ("ce_type", f"com.orderwatch.exception.{exc.state}".encode()),
        ("ce_source", source.encode()),
        ("ce_subject", exc.subject.encode()),
        ("ce_time", exc.detected_at.isoformat().replace("+00:00", "Z").encode()),
        ("content-type", b"application/json"),
    ]


class Clock:
    """Wall clock, or event time (largest occurred_at read) for backfills and tests."""

    def __init__(self, mode: str, wall: Callable[[], float] = time.time) -> None:
        self.mode = mode
        self._wall = wall
        self.event_time = float("-inf")

    def observe(self, event: InboundEvent) -> float:
        ts = event.occurred_at.timestamp()
        if ts > self.event_time:
            self.event_time = ts
        return self.now()

    def now(self) -> float:
        return self._wall() if self.mode == "wall" else self.event_time


@dataclass
class Counters:
    """What the shell did; mirrored into Prometheus by the metrics hooks."""

    routed: int = 0
    invalid: int = 0
    processed: int = 0
    published: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class Shell:
    """One worker's engine and the I/O decisions around it.

    ``send_shard(key, value, partition)``: repartition an event to the shard topic.
    ``send_dlq(value, headers)``, ``send_exception(key, value, headers)``: publish.
    ``send_changelog(partition, key, value)``: persist a shard (value None: tombstone).
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        partitions: int,
        *,
        send_shard: Send,
        send_dlq: Send,
        send_exception: Send,
        send_changelog: Send,
        source: str = "orderwatch",
        on_invalid: Callable[[str, str], None] | None = None,
        on_event: Callable[[str, InboundEvent, float], None] | None = None,
        on_exception: Callable[[ExceptionEvent, float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.partitions = partitions
        self.send_shard = send_shard
        self.send_dlq = send_dlq
        self.send_exception = send_exception
        self.send_changelog = send_changelog
        self.source = source
        self.on_invalid = on_invalid
        self.on_event = on_event
        self.on_exception = on_exception
        self.counters = Counters()
        self.owned: set[int] = set()

    # --- stage 1: source topics -> shard topic -------------------------------------------------

    def route(self, value: bytes | None, topic: str, partition: int, offset: int) -> None:
        """Validate one input message and repartition it by each key its state lives under.

        Producers' keys are not trusted: the shard key comes from the event's own fields.
        """
        raw = value or b""
        try:
            event = decode_event(raw)
        except EventValidationError as exc:
            self.counters.invalid += 1
            self.counters.by_reason[exc.reason] = self.counters.by_reason.get(exc.reason, 0) + 1
            self.send_dlq(
                raw[:DLQ_MAX_BYTES],
                dlq_headers(exc.reason, exc.detail, topic, partition, offset, len(raw)),
            )
            if self.on_invalid is not None:
                self.on_invalid(topic, exc.reason)
            return
        if self.on_event is not None:
            self.on_event(topic, event, self.clock.now())
        for key in self.engine.route(event):
            if key == BROADCAST:
                for p in range(self.partitions):
                    self.send_shard(broadcast_key(p).encode(), raw, p)
            else:
                self.send_shard(key.encode(), raw, None)
        self.counters.routed += 1

    # --- stage 2: shard topic -> engine -> exceptions + changelog ------------------------------

    def process(self, batch: Iterable[tuple[bytes, bytes, int]]) -> None:
        """Run a batch of (shard key, raw event, partition) through the engine, then persist."""
        engine = self.engine
        for key_bytes, raw, partition in batch:
            key = key_bytes.decode()
            try:
                event = decode_event(raw)
            except EventValidationError:
                continue  # validated in stage 1; only a foreign writer to our topic gets here
            only = (BROADCAST,) if key.startswith(BROADCAST) else (key,)
            self._publish(engine.step(event, self.clock.observe(event), only))
            self.counters.processed += 1
            if only[0] == BROADCAST:
                engine.dirty.discard(BROADCAST)
                self._persist_blacklist(partition)
        self._persist()

    def sweep(self) -> None:
        """Fire due deadlines on this worker's shards; the timer calls this every tick."""
        self._publish(self.engine.sweep(self.clock.now()))
        self._persist()

    def _publish(self, exceptions: list[ExceptionEvent]) -> None:
        for exc in exceptions:
            self.send_exception(
                exc.subject.encode(), encode_exception(exc), cloudevent_headers(exc, self.source)
            )
            self.counters.published += 1
            if self.on_exception is not None:
                self.on_exception(exc, self.clock.now())

    def _persist(self) -> None:
        for key, state in self.engine.take_dirty().items():
            if key == BROADCAST:
                for p in self.owned:
                    self._persist_blacklist(p)
                continue
            encoded = key.encode()
            value = None if state is None else orjson.dumps(state)
            self.send_changelog(partition_for(encoded, self.partitions), encoded, value)

    def _persist_blacklist(self, partition: int) -> None:
        value = orjson.dumps({k: sorted(v) for k, v in self.engine.blacklist.items()})
        self.send_changelog(partition, broadcast_key(partition).encode(), value)

    # --- recovery and rebalancing --------------------------------------------------------------

    def restore(self, items: Iterable[tuple[bytes, bytes | None]], owned: set[int]) -> int:
        """Load shards of newly owned partitions from the recovered table; returns how many."""
        self.owned = set(owned)
        loaded = 0
        for key_bytes, value in items:
            if value is None:
                continue
            key = key_bytes.decode()
            if key.startswith(BROADCAST):
                data = orjson.loads(value)
                for kind, values in data.items():
                    self.engine.blacklist.setdefault(kind, set()).update(values)
                continue
            if partition_for(key_bytes, self.partitions) not in owned:
                continue
            if key in self.engine.shards:
                continue
            self.engine.restore(key, orjson.loads(value))
            loaded += 1
        return loaded

    def revoke(self, partitions: set[int]) -> None:
        """Forget shards of partitions this worker no longer owns."""
        self.owned -= partitions
        gone = [
            k
            for k in self.engine.shards
            if partition_for(k.encode(), self.partitions) in partitions
        ]
        self.engine.forget(gone)
