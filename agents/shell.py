"""The imperative shell's logic: decode, route, feed the engines, publish, persist.

Kept free of Faust objects (it is handed plain values and send functions) so the same code runs in
the worker and in tests, and so every Faust pitfall is handled in ``app.py`` alone. Every method
here is synchronous on purpose: an engine step, the exceptions it yields and the changelog writes
of the shards it changed happen without an ``await`` in between, so the sweep timer and the agents
(one asyncio loop) can never interleave inside one state change.

One engine per partition of the shard topic, like a Kafka Streams task: a partition moves between
workers with its engine's state (its changelog).

Event-time mode runs on a *watermark*, as Flink does. A worker catching up on a backlog reads its
input partitions at different speeds, hours of event time apart, so "the largest occurred_at read
so far" would let the payments topic, read ahead, fire timeouts whose resolving order events are
simply not read yet. Each router (stage 1) therefore stamps every envelope it forwards with its
watermark: the smallest of the largest occurred_at it has read on each input partition that still
has a backlog (a caught-up partition cannot hold anything older back). It also reports it to every
shard partition each tick, for quiet periods. A shard partition's clock is the smallest watermark
of the live routers, and, once every router is caught up, the largest occurred_at any has read:
replay's clock at the end of its input.
"""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import logging
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from orderwatch.agents import envelope
from orderwatch.engine import BROADCAST, Engine, atomic, derived
from orderwatch.engine.actions import paused_types
from orderwatch.engine.cache import Loader, ShardCache
from orderwatch.engine.core import TimerSource
from orderwatch.engine.silence import SilenceMonitor
from orderwatch.engine.state import ACTIONS, home_key
from orderwatch.errors import EventValidationError, error_text
from orderwatch.events.actions import encode_entry
from orderwatch.events.codec import decode_event, encode_action, encode_exception, encode_reply
from orderwatch.events.exception import ExceptionEvent
from orderwatch.events.inbound import InboundEvent
from orderwatch.events.kpis import encode_kpi

log = logging.getLogger("orderwatch.worker")

#: Dead-letter reason of a message whose processing raised something nobody foresaw (a bug)
INTERNAL_ERROR = "internal_error"
#: ``on_error`` policies (``ORDERWATCH_ON_PROCESSING_ERROR``), as Kafka Streams' processing
#: exception handler (KIP-1033) offers CONTINUE and FAIL
DEAD_LETTER, FAIL = "dead_letter", "fail"

#: A DLQ copy keeps at most this much of a bad message (the reason headers say how big it was).
DLQ_MAX_BYTES = 64 * 1024
#: Shard-topic key of the routers' periodic watermark reports (event-time mode).
WATERMARK = "~wm"
#: Shard-topic key of an envelope: what one router batch routed to one shard partition.
BATCH = b"~batch"
#: Header carrying "router-id watermark largest-read" on every shard message (event-time mode).
WATERMARK_HEADER = "orderwatch.watermark"
#: A router not heard from for this long no longer holds the watermark back (it left).
ROUTER_EXPIRY = 10.0
#: A router's "nothing behind" (an infinite watermark) stands this long after it was heard; then
#: it holds the clock at the largest time that router had read, until it reports again
CAUGHT_UP_VALID = 2.0
#: Inputs caught up this long (wall seconds) let the watermark move to the largest time read.
CAUGHT_UP_FOR = 1.0
INF = float("inf")
#: At most this many routed events are kept decoded for stage 2 (see ``Shell._remember``).
DECODED_LIMIT = 20_000
#: A partition with this many changed shards writes them before the next offset commit.
DIRTY_LIMIT = 5_000
#: Field of a partition's positions record (``positions_key``): the last position it read from
#: each input (``Shell._unread``)
READ_TO = "read_to"

#: (shard key, raw event, partition, arrival time, watermark stamp) as stage 2 reads it; the key
#: ``BATCH`` carries an envelope of many (shard key, raw event) items instead
ShardMessage = tuple[bytes, bytes, int, float | None, bytes | None]


#: An event waiting in the shell for its partition's clock (``Shell.waiting``): (occurred_at,
#: read order, shard key, event, arrival)
Waiting = tuple[float, int, str, InboundEvent, float | None]


Headers = list[tuple[str, bytes]]
Send = Callable[..., Any]


@functools.lru_cache(maxsize=1 << 13)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), so any Kafka client agrees on a key's partition.

    Cached: murmur2 is pure Python here (2.6 us a key), and an order's keys recur within
    moments (an order and its payment, a router's key and stage 2's flag for it). 8,192 keys:
    at 65,536 the cache held 12.8 MiB of keys after a 10,000-order day (tracemalloc), a tenth of
    the worker's cold RSS, and the smaller one costs nothing measurable (worker CPU 5.5-5.6 s
    against 5.5-5.7 s over the same 100k events, three interleaved runs each).
    """
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def _time_and_order(item: tuple[Any, ...]) -> tuple[float, int]:
    return item[0], item[1]


def broadcast_key(partition: int) -> str:
    """Each partition of the shard topic keeps its own copy of the blacklist under this key."""
    return f"{BROADCAST}:{partition}"


def positions_key(partition: int) -> str:
    """The key of a shard partition's record of how far it has read each input (``READ_TO``).
    A record of its own, not a field of the blacklist's copy: it changes at every commit, and the
    blacklist may be large. ``*:`` keys are no shards to the store (``agents/store.py``)."""
    return f"{BROADCAST}:read:{partition}"


def dlq_headers(
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    size: int,
    error_class: str | None = None,
    stage: str | None = None,
) -> Headers:
    """Dead-letter headers in Kafka Connect's ``__connect.errors.*`` convention, plus ours.

    For bad input the "exception class" is the reason code; for an ``internal_error`` it is
    the class of the exception that was raised, and ``orderwatch.error.stage`` says where
    (``route``: stage 1, ``detect``: stage 2, whose topic is the shard topic).
    """
    headers = [
        ("__connect.errors.topic", topic.encode()),
        ("__connect.errors.partition", str(partition).encode()),
        ("__connect.errors.offset", str(offset).encode()),
        ("__connect.errors.exception.class.name", (error_class or reason).encode()),
        ("__connect.errors.exception.message", detail[:1000].encode("utf-8", "replace")),
        ("orderwatch.error.reason", reason.encode()),
        ("orderwatch.error.original_size", str(size).encode()),
    ]
    if stage is not None:
        headers.append(("orderwatch.error.stage", stage.encode()))
    return headers


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


@dataclass
class Counters:
    """What the shell did (tests and logs read these)."""

    routed: int = 0
    #: event copies sent to the shard topic (one per shard key) and applied from it
    queued: int = 0
    invalid: int = 0
    processed: int = 0
    published: int = 0
    requeued: int = 0
    #: routed items skipped by stage 2 as copies of items it had read (``Shell._unread``)
    copies: int = 0
    #: messages whose processing raised unexpectedly (dead-lettered as ``internal_error``)
    failed: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class Shell:
    """One worker's engines (one per owned partition) and the I/O decisions around them.

    ``send_shard(key, value, partition, headers)``: repartition an event to the shard topic.
    ``send_dlq(value, headers)``, ``send_exception(key, value, headers)``: publish.
    ``send_changelog(partition, key, value)``: persist a shard (value None: tombstone).
    ``clock``: ``"wall"`` or ``"event"`` (the watermark described above).
    ``on_error``: what an unexpected exception on one message's path does (decode, routing,
    envelope, engine step, encoding what it published). ``"dead_letter"``: the message goes
    to the dead-letter topic as ``internal_error`` and its neighbours go on; the engine step
    is atomic (``engine.atomic``), so the shards it touched are as they were before it.
    ``"fail"``: the exception propagates, the worker stops (``app.py``) and commits nothing
    past the message, so a restart reads it again; steps are then not copied first.
    """

    def __init__(
        self,
        new_engine: Callable[[], Engine],
        partitions: int,
        *,
        clock: str = "wall",
        send_shard: Send,
        send_dlq: Send,
        send_exception: Send,
        send_changelog: Send,
        source: str = "orderwatch",
        silence: SilenceMonitor | None = None,
        wall: Callable[[], float] = time.time,
        watermark_exempt: Iterable[str] = (),
        on_invalid: Callable[[str, str], None] | None = None,
        on_event: Callable[[str, Any, float], None] | None = None,
        on_exception: Callable[[ExceptionEvent, float | None], None] | None = None,
        on_error: str = DEAD_LETTER,
        on_internal_error: Callable[[str, str], None] | None = None,
        shard_topic: str = "shard-events",
        send_reply: Send | None = None,
        send_action: Send | None = None,
        on_action: Callable[[Any], None] | None = None,
        on_paused: Callable[[list[str]], None] | None = None,
        send_kpi: Send | None = None,
        on_kpi: Callable[[Any], None] | None = None,
        send_blacklist: Send | None = None,
        align_lead: int = 0,
        hold_read_ahead: int = 0,
    ) -> None:
        self.new_engine = new_engine
        self.partitions = partitions
        self.clock = clock
        self.send_shard = send_shard
        self.send_dlq = send_dlq
        self.send_exception = send_exception
        self.send_changelog = send_changelog
        self.source = source
        self.silence = silence
        self.wall = wall
        self.on_invalid = on_invalid
        self.on_event = on_event
        self.on_exception = on_exception
        if on_error not in (DEAD_LETTER, FAIL):
            raise ValueError(f"on_error must be {DEAD_LETTER!r} or {FAIL!r}, not {on_error!r}")
        self.contain = on_error == DEAD_LETTER
        self.on_internal_error = on_internal_error
        self.shard_topic = shard_topic
        #: ``send_reply(key, value)``: a command's reply (CONTRACT section 8), keyed by exception_id
        self.send_reply = send_reply
        #: v2: ``send_action(key, value)``: an action event (section 10), keyed by order_id;
        #: ``on_action(event)`` counts it; ``on_paused(types)`` each sweep of the partition that
        #: holds the action shard: the types whose circuit breaker is open
        self.send_action = send_action
        self.on_action = on_action
        self.on_paused = on_paused
        #: v2: ``send_kpi(key, value)``: an hourly KPI record (section 11), keyed by its kpi;
        #: ``on_kpi(record)`` adds it to the KPI counters
        self.send_kpi = send_kpi
        self.on_kpi = on_kpi
        #: v2: ``send_blacklist(key, value)``: a ``blacklist.added`` of an approved
        #: ``blacklist.suggest`` (section 10), keyed by the entry's value
        self.send_blacklist = send_blacklist
        self.counters = Counters()
        self.engines: dict[int, Engine] = {}
        #: shard partitions this worker owns (set on recovery, cleared on revocation)
        self.assigned: set[int] = set()
        self.event_clock: dict[int, float] = {}
        #: raw event -> (its model, copies routed to partitions owned here not yet read back)
        self.decoded: dict[bytes, tuple[InboundEvent, int]] = {}
        self.held: frozenset[str] = frozenset()
        #: "<process>/<generation>": the generation changes with the input partitions read, so a
        #: shard partition never reads a new watermark against an old list of inputs
        self.router_base = uuid.uuid4().hex[:12]
        self.generation = 0
        self.router_id = f"{self.router_base}/0"
        #: stage 1: per input (topic, partition), the largest occurred_at and the last offset read
        self.source_hi: dict[tuple[str, int], float] = {}
        self.source_pos: dict[tuple[str, int], int] = {}
        #: stage 1, watermark alignment: records an input partition may read past the clock
        #: before ``ahead`` pauses it (0: no count, event time alone), and per input the
        #: occurred_at of each record read that the clock had not reached at the last ``ahead``
        self.align_lead = align_lead
        self.lead: dict[tuple[str, int], collections.deque[float]] = {}
        #: stage 1, watermark alignment: records the inputs may read past a clock held by an
        #: input with nothing left to read, before ``ahead`` pauses them at that clock (0: none)
        self.hold_read_ahead = hold_read_ahead
        #: stage 1: input partitions and their high watermarks at the last look, and where the
        #: consumer stood in each (its committed offset until it delivers a message)
        self.highs: dict[tuple[str, int], int | None] = {}
        self.starts: dict[tuple[str, int], int | None] = {}
        #: stage 1: since when (wall time) every input has been idle (see ``watermark``)
        self.caught_up_since: float | None = None
        #: stage 1: since when (wall time) each input partition has had nothing to read, and the
        #: offset read at that time (a record read since ends the idleness)
        self.idle_since: dict[tuple[str, int], tuple[float, int | None]] = {}
        #: stage 1: wall time of the last fetch response for each input partition, at the last
        #: look, when the consumer tells (``look``'s ``fetched``)
        self.fetched_at: dict[tuple[str, int], float | None] = {}
        #: topics that hold the watermark only while unread (the blacklist: config, not a timed
        #: stream; its last time is old, and holding it there would stop the clock)
        self.watermark_exempt: frozenset[str] = frozenset(watermark_exempt)
        #: stage 2: per shard partition, router id -> (watermark, largest read, wall time heard,
        #: input partitions it reads); and every input partition the routers expect to be read
        self.reports: dict[int, dict[str, tuple[float, float, float, frozenset[str] | None]]] = {}
        self.expected: dict[int, frozenset[str]] = {}
        #: stage 2: per shard partition, the newest generation heard of each router process
        self.generations: dict[int, dict[str, int]] = {}
        #: stage 1: per shard partition, the (shard key, raw event, source, position) items routed
        #: and not yet sent
        self.routed: dict[int, list[envelope.Item]] = {}
        #: stage 1: each input's name in an envelope's source table (``envelope``)
        self._sources: dict[tuple[str, int], str] = {}
        self.routed_bytes: dict[int, int] = {}
        #: stage 2 (event time): per shard partition, the occurred_at of each event applied ahead
        #: of the clock (the engine parks it until the clock reaches it), smallest first
        self.parked_at: dict[int, list[float]] = {}
        #: stage 2 (event time): per shard partition, the events read ahead of the clock that
        #: wait in the shell for it, a heap by (occurred_at, read order); see ``_step_stamped``
        self.waiting: dict[int, list[Waiting]] = {}
        self._read_order = itertools.count()
        #: stage 2: per shard partition, the last position read from each input (``_unread``),
        #: written with the state; and the partitions whose positions moved since it was written
        self.read_to: dict[int, dict[str, int]] = {}
        self.read_moved: set[int] = set()
        self._copies_told: set[tuple[int, str]] = set()

    def engine(self, partition: int) -> Engine:
        engine = self.engines.get(partition)
        if engine is None:
            engine = self.engines[partition] = self.new_engine()
            engine.hold(self.held)
            if self.contain:
                atomic.guard(engine, functools.partial(self._deadline_failed, partition))
            # a fraud window's flag for an order goes to the partition that owns the order
            engine.forward = True
        return engine

    def now(self, partition: int) -> float:
        if self.clock == "wall":
            return self.wall()
        return self.event_clock.get(partition, float("-inf"))

    # --- stage 1: source topics -> shard topic -------------------------------------------------

    def route(self, value: bytes | None, topic: str, partition: int, offset: int) -> None:
        """Validate one input message and repartition it by each key its state lives under.

        Producers' keys are not trusted: the shard key comes from the event's own fields. An
        unexpected exception is contained here (``on_error``): nothing of the message has been
        queued when it can happen, so dead-lettering it loses nothing else.
        """
        raw = value or b""
        try:
            self._route(raw, topic, partition, offset)
        except Exception as exc:
            if not self.contain:
                raise
            self._failed(raw, exc, "route", topic, partition, offset)

    def _route(self, raw: bytes, topic: str, partition: int, offset: int) -> None:
        tp = (topic, partition)
        if offset > self.source_pos.get(tp, -1):
            self.source_pos[tp] = offset
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
        occurred = event.occurred_ts
        if occurred > self.source_hi.get(tp, -INF):
            self.source_hi[tp] = occurred
        if (self.align_lead or self.hold_read_ahead) and topic not in self.watermark_exempt:
            lead = self.lead.get(tp)
            if lead is None:
                lead = self.lead[tp] = collections.deque()
            lead.append(occurred)
        if self.silence is not None:
            self.silence.observe(topic, event.source, self.wall())
        if self.on_event is not None:
            self.on_event(topic, event, self.wall())
        keys = Engine.route(event)
        source = self._sources.get(tp)
        if source is None:
            source = self._sources[tp] = f"{topic}/{partition}"
        # each item's position (``envelope``): the offset, then its rank among this message's
        # items in the same shard partition
        position = offset * envelope.PER_MESSAGE
        ranks: dict[int, int] = {}
        here = 0
        for key in keys:
            if key == BROADCAST:
                for p in range(self.partitions):
                    rank = ranks[p] = ranks.get(p, -1) + 1
                    self._queue(p, broadcast_key(p).encode(), raw, source, position + rank)
                here += len(self.assigned)
            else:
                encoded = key.encode()
                p = partition_for(encoded, self.partitions)
                rank = ranks[p] = ranks.get(p, -1) + 1
                self._queue(p, encoded, raw, source, position + rank)
                here += p in self.assigned
        if here:
            self._remember(raw, event, here)
        self.counters.routed += 1

    def _remember(self, raw: bytes, event: InboundEvent, uses: int) -> None:
        """Keep a routed event decoded for the copies this worker's own stage 2 will read.

        Stage 2 reads the same bytes back from the shard topic a moment later; decoding them
        again was a fifth of its work. Models are frozen, so one object serves every copy. An
        entry goes with its last copy; copies that never come back (their partition moved away
        meanwhile) are dropped wholesale at ``DECODED_LIMIT``, after which stage 2 decodes.
        """
        decoded = self.decoded
        if len(decoded) >= DECODED_LIMIT:
            decoded.clear()
        held = decoded.get(raw)
        decoded[raw] = (event, uses + (held[1] if held is not None else 0))

    def _queue(self, partition: int, key: bytes, raw: bytes, source: str, position: int) -> None:
        size = envelope.item_size(key, raw)
        if self.routed_bytes.get(partition, 0) + size > envelope.MAX_BYTES:
            self._send_envelope(partition)
        self.routed.setdefault(partition, []).append((key, raw, source, position))
        self.counters.queued += 1
        self.routed_bytes[partition] = self.routed_bytes.get(partition, 0) + size

    def flush(self) -> None:
        """Send what was routed since the last flush: one envelope per shard partition.

        The router calls this at the end of each batch, before it awaits anything, so a
        watermark report (sent by the timer, at an await) never overtakes routed events.
        """
        for partition in list(self.routed):
            self._send_envelope(partition)

    def _send_envelope(self, partition: int) -> None:
        items = self.routed.pop(partition, None)
        self.routed_bytes.pop(partition, None)
        if items:
            # stamped when sent: the watermark covers every event inside, all read by now
            headers = self._stamp() if self.clock == "event" else None
            self.send_shard(BATCH, envelope.pack(items), partition, headers)

    # --- stage 2: shard topic -> engines -> exceptions + changelog -----------------------------

    def process(self, batch: Iterable[ShardMessage]) -> None:
        """Run a batch through the engines; changed shards wait for ``persist`` (see there).

        Items are (shard key, raw event, partition, arrival, watermark stamp): arrival is when
        stage 1 read the event (the shard message's timestamp), for the event latency.
        """
        touched: set[int] = set()
        report = WATERMARK.encode()
        for key_bytes, raw, partition, arrival, stamp in batch:
            if partition not in self.assigned:
                # fetched before a rebalance took its partition away. Applying it here would
                # write a stale shard behind the new owner's back, and dropping it could lose it
                # (its offset may be committed with this batch): hand it to the new owner by
                # sending it to the same partition again. A duplicate is harmless (idempotent).
                if key_bytes != report:
                    headers = None if stamp is None else [(WATERMARK_HEADER, stamp)]
                    if key_bytes == BATCH:
                        raw = self._requeued(raw)
                    self.send_shard(key_bytes, raw, partition, headers)
                    self.counters.requeued += 1
                continue
            touched.add(partition)
            if key_bytes == BATCH:
                try:
                    items = self._unread(partition, envelope.unpack(raw))
                except envelope.EnvelopeError as exc:
                    # a foreign writer to our internal topic, or a later worker's format in a
                    # rolling update: dead-lettered, never dropped unseen
                    self._failed(raw, exc, "detect", self.shard_topic, partition, -1)
                    items = []
                if stamp is not None:
                    self._step_stamped(items, partition, arrival, stamp)
                else:
                    for key, event in items:
                        self._step(key.decode(), event, partition, arrival)
                continue
            if key_bytes != report:
                self._step(key_bytes.decode(), raw, partition, arrival)
            if stamp is not None:
                # the stamp says everything up to and including this message has been read
                before = self.now(partition)
                self._heard(partition, stamp, raw if key_bytes == report else None)
                if self.waiting.get(partition):
                    self._step_waiting(partition, before, [])
        for partition in touched:
            if self.clock == "event":
                engine = self.engine(partition)
                self._publish(engine.sweep(self.now(partition)))
                self._hand_on(engine)
            if len(self.engines[partition].dirty) >= DIRTY_LIMIT:
                self._persist(partition, commit=False)

    def _unread(self, partition: int, items: list[envelope.Item]) -> list[tuple[bytes, bytes]]:
        """The items of an envelope not read before by ``partition``: a copy (an item at or before
        the last position read from its source) is skipped and counted (``copies``).

        A router that reads an input again from its last commit (a restart after a crash, or a
        rebalance that moved the input) routes again what its predecessor had routed. Within the
        retention a copy was harmless: its shard had the event already and ignored it. But a
        copy read after its shard was forgotten came as a new order: a worker restarted after a
        crash heard its dead incarnation's stamps, its clock went to the day's end (three weeks
        on) and evicted the day's shards, and then its own router's copies arrived
        (``tracking_stale`` and ``not_shipped`` for orders long delivered: the fail-policy
        containment test, 3 runs in 5). Each item carries its input offset (``envelope``), and
        every shard partition keeps how far it has read each input (``read_to``), written with
        its state (``_persist``), so a copy is known whenever it comes. Items of no known source
        (a requeued envelope, an older worker's) are read as before.
        """
        read = self.read_to.get(partition)
        if read is None:
            read = self.read_to[partition] = {}
        kept: list[tuple[bytes, bytes]] = []
        for key, raw, source, position in items:
            if source:
                last = read.get(source, -1)
                if position <= last:
                    self._take_decoded(raw)
                    self.counters.copies += 1
                    if (partition, source) not in self._copies_told:
                        self._copies_told.add((partition, source))
                        log.info(
                            "shard partition %d skips copies from %s (offset %d, read to %d): "
                            "routed again after a crash or a rebalance; if that topic was "
                            "created again, reset the state (docs/operations.md)",
                            partition,
                            source,
                            position // envelope.PER_MESSAGE,
                            last // envelope.PER_MESSAGE,
                        )
                    continue
                read[source] = position
                self.read_moved.add(partition)
            kept.append((key, raw))
        return kept

    def _requeued(self, raw: bytes) -> bytes:
        """An envelope for the partition's new owner, without sources: its offset may be
        committed here already, so its items may come after later ones from the same inputs,
        and the new owner must read them all (a duplicate is harmless)."""
        try:
            items = envelope.unpack(raw)
        except envelope.EnvelopeError:
            return raw
        packed: bytes = envelope.pack_v1((key, event) for key, event, _, _ in items)
        return packed

    def _take_decoded(self, raw: bytes) -> InboundEvent | None:
        """The model ``_remember`` kept for one copy of ``raw`` (None: none kept), used up: the
        entry goes with its last copy, read or skipped (``_unread``)."""
        held = self.decoded.get(raw)
        if held is None:
            return None
        event, uses = held
        if uses > 1:
            self.decoded[raw] = (event, uses - 1)
        else:
            del self.decoded[raw]
        return event

    def _decode_routed(self, raw: bytes) -> InboundEvent | None:
        """A shard-topic event, validated by stage 1; None only from a foreign writer."""
        event = self._take_decoded(raw)
        if event is not None:
            return event
        try:
            return decode_event(raw)
        except EventValidationError:
            # a fraud window's flag for an order (``_hand_on``), or a foreign writer's bytes
            return derived.decode(raw)  # type: ignore[return-value]

    def _step(self, key: str, raw: bytes, partition: int, arrival: float | None) -> None:
        try:
            event = self._decode_routed(raw)
        except Exception as exc:
            if not self.contain:
                raise
            self._failed(raw, exc, "detect", self.shard_topic, partition, -1)
            return
        if event is not None:
            self._apply(key, event, raw, partition, arrival, self.now(partition))

    def _apply(
        self,
        key: str,
        event: InboundEvent,
        raw: bytes | None,
        partition: int,
        arrival: float | None,
        now: float,
    ) -> None:
        only = (BROADCAST,) if key.startswith(BROADCAST) else (key,)
        engine = self.engine(partition)
        if now < event.occurred_ts and self.clock == "event":
            # the engine (``reorder``) parks it until the clock reaches it: counted for
            # ``parked`` (an upper bound: a step that fails parks nothing)
            heapq.heappush(self.parked_at.setdefault(partition, []), event.occurred_ts)
        if not self.contain:
            self._publish(engine.step(event, now, only), arrival)
            if engine.replies or engine.derived or engine.action_events or engine.kpi_records:
                self._hand_on(engine)
            self.counters.processed += 1
            return
        try:
            # encoded inside the atomic step: an exception that cannot be written fails the
            # step, and the state goes back with it
            sends = atomic.step(engine, event, now, only, then=self._encode)
        except atomic.StepFailed as failed:
            self._publish(failed.due, arrival)
            if raw is None:  # an event that waited in the shell: its bytes were not kept
                raw = orjson.dumps(event.model_dump(mode="json"))
            self._failed(raw, failed.error, "detect", self.shard_topic, partition, -1)
            return
        self._send_encoded(sends, arrival)
        if engine.replies or engine.derived or engine.action_events or engine.kpi_records:
            self._hand_on(engine)
        self.counters.processed += 1

    def _deadline_failed(
        self, partition: int, name: str, event: InboundEvent | None, exc: BaseException
    ) -> None:
        """A deadline's firing raised (``atomic.guard`` undid it): a parked event, read ahead of
        the clock and applied when the clock reached it, is dead-lettered in its JSON form (its
        original bytes are long gone); a timeout has no message to dead-letter: logged and
        counted (stage ``deadline``)."""
        if event is not None:
            raw = orjson.dumps(event.model_dump(mode="json"))
            self._failed(raw, exc, "detect", self.shard_topic, partition, -1)
            return
        self.counters.failed += 1
        log.error(
            "internal_error firing deadline %s on partition %d: %s: %s; dropped\n%s",
            name.split("|")[0],
            partition,
            type(exc).__name__,
            error_text(exc),
            "".join(traceback.format_tb(exc.__traceback__, limit=-30)),
        )
        if self.on_internal_error is not None:
            self.on_internal_error("deadline", type(exc).__name__)

    def _failed(
        self, raw: bytes, exc: BaseException, stage: str, topic: str, partition: int, offset: int
    ) -> None:
        """Dead-letter one message whose processing raised (``on_error="dead_letter"``).

        Headers carry the exception's class and a masked, cut message (``error_text``: the
        message of an arbitrary exception may quote input); the log line has the traceback's
        frames (file, line, code) and the same masked message, never the exception's own text.
        """
        name = type(exc).__name__
        text = error_text(exc)
        self.counters.failed += 1
        self.counters.by_reason[INTERNAL_ERROR] = self.counters.by_reason.get(INTERNAL_ERROR, 0) + 1
        log.error(
            "internal_error in %s (%s/%d@%d): %s: %s; the message is dead-lettered\n%s",
            stage,
            topic,
            partition,
            offset,
            name,
            text,
            "".join(traceback.format_tb(exc.__traceback__, limit=-30)),
        )
        self.send_dlq(
            raw[:DLQ_MAX_BYTES],
            dlq_headers(
                INTERNAL_ERROR, f"{name}: {text}", topic, partition, offset, len(raw), name, stage
            ),
        )
        if self.on_internal_error is not None:
            self.on_internal_error(stage, name)

    def _hand_on(self, engine: Engine) -> None:
        """What an engine produced besides exceptions: command replies to their topic, and
        flags for orders' shards to the shard topic partition that owns each order (Kafka
        Streams' repartition of a derived record; replay applies them at once, see
        ``engine/derived.py``). Sent one by one: both are rare next to events."""
        for reply in engine.take_replies():
            if self.send_reply is not None:
                self.send_reply(reply.exception_id.encode(), encode_reply(reply))
        if engine.action_events:
            for action in engine.take_actions():
                if self.send_action is not None:
                    self.send_action((action.order_id or "").encode(), encode_action(action))
                if self.on_action is not None:
                    self.on_action(action)
            # an approved blacklist.suggest's entry (always made with its action's events):
            # to the blacklist topic, keyed by the value; every partition reads it back
            for entry in engine.take_blacklist():
                if self.send_blacklist is not None:
                    self.send_blacklist(entry.value.encode(), encode_entry(entry))
        if engine.kpi_records:
            for record in engine.take_kpis():
                if self.send_kpi is not None:
                    self.send_kpi(record.kpi.encode(), encode_kpi(record))
                if self.on_kpi is not None:
                    self.on_kpi(record)
        for flag in engine.take_derived():
            key = flag.shard_key.encode()
            self.send_shard(key, flag.to_bytes(), partition_for(key, self.partitions), None)

    def _step_stamped(
        self,
        items: list[tuple[bytes, bytes]],
        partition: int,
        arrival: float | None,
        stamp: bytes,
    ) -> None:
        """An envelope with its watermark: hear the stamp first, then read the events in time
        order, each at its own time while that is within the clock.

        The stamp covers every event inside (it was taken when the envelope was sent), so the
        clock it gives holds for them as for any later message. Read at the old clock, nearly
        every event of a backlog is ahead of it and waits in its shard (serialized, scheduled,
        read back); read in time order at its own time, the engine sees exactly what waiting
        would have given (deadlines before the event fire first), without the detour. Events
        beyond the new clock still wait. Ties keep the order they were read in.

        Events beyond the new clock wait here in the shell (``waiting``), each applied at its own
        time once a stamp or report moves the clock past it, in time order with what arrives
        then. Parked in the engine instead, nine events in ten of a backlog (every input but the
        slowest is read ahead of the clock) cost two atomic steps each (parked, then fired with
        a copy of its shard) and a deadline; waiting here, one. ``persist`` parks in the engine
        whatever still waits before the state is written, so no offset commit covers an event
        held in memory alone.
        """
        before = self.now(partition)
        self._heard(partition, stamp)
        clock = self.now(partition)
        order = self._read_order
        decoded: list[tuple[float, int, str, InboundEvent, bytes | None, float | None]] = []
        for key_bytes, raw in items:
            try:
                event = self._decode_routed(raw)
                if event is None:
                    continue
                occurred = event.occurred_ts
                if occurred > clock:
                    heapq.heappush(
                        self.waiting.setdefault(partition, []),
                        (occurred, next(order), key_bytes.decode(), event, arrival),
                    )
                else:
                    decoded.append((occurred, next(order), key_bytes.decode(), event, raw, arrival))
            except Exception as exc:
                if not self.contain:
                    raise
                self._failed(raw, exc, "detect", self.shard_topic, partition, -1)
        if decoded or self.waiting.get(partition):
            self._step_waiting(partition, before, decoded)

    def _step_waiting(
        self,
        partition: int,
        before: float,
        decoded: list[tuple[float, int, str, InboundEvent, bytes | None, float | None]],
    ) -> None:
        """Apply ``decoded`` (read now, within the clock) and the waiting events the clock has
        reached, in time order (ties in the order read), each at its own time."""
        clock = self.now(partition)
        queue = self.waiting.get(partition)
        if queue and queue[0][0] <= clock:
            while queue and queue[0][0] <= clock:
                occurred, seq, key, event, arrival = heapq.heappop(queue)
                decoded.append((occurred, seq, key, event, None, arrival))
            if not queue:
                del self.waiting[partition]
        decoded.sort(key=_time_and_order)
        for occurred, _, shard_key, event, raw, arrival in decoded:
            now = before if occurred <= before else (occurred if occurred <= clock else clock)
            self._apply(shard_key, event, raw, partition, arrival, now)

    def _park_waiting(self, partition: int) -> None:
        """Everything waiting in the shell for ``partition``'s clock, parked in its engine (in
        time order, at the clock: ``_apply``), so the state written next holds it."""
        queue = self.waiting.pop(partition, None)
        if not queue:
            return
        now = self.now(partition)
        while queue:
            _, _, key, event, arrival = heapq.heappop(queue)
            self._apply(key, event, None, partition, arrival, now)

    def sweep(self) -> None:
        """Fire due deadlines of every owned partition; the timer calls this every tick."""
        if self.silence is not None:
            exceptions, held = self.silence.check(self.wall())
            self._publish(exceptions)
            if held != self.held:
                self.held = held
                for engine in self.engines.values():
                    engine.hold(held)
        for partition, engine in self.engines.items():
            self._publish(engine.sweep(self.now(partition)))
            if engine.replies or engine.derived or engine.action_events or engine.kpi_records:
                self._hand_on(engine)
            if self.on_paused is not None and ACTIONS in engine.shards:
                self.on_paused(paused_types(engine.shards.get(ACTIONS), self.now(partition)))

    # --- the event-time watermark ------------------------------------------------------------

    def look(
        self,
        assigned: Iterable[tuple[str, int]],
        highwater: Callable[[str, int], int | None],
        position: Callable[[str, int], int | None] | None = None,
        fetched: Callable[[str, int], float | None] | None = None,
    ) -> None:
        """Refresh the input partitions, their high watermarks and the consumer's position in
        each (before each routed batch and each report); ``fetched``, when the consumer tells,
        the wall time of the last fetch response for each (aiokafka's ``last_poll_timestamp``),
        the evidence ``watermark`` measures idleness by.

        A partition that left this router is forgotten: if it comes back, what was read from
        it meanwhile was read by another router, so an old offset or time would be wrong.
        """
        highs = {tp: highwater(*tp) for tp in assigned}
        if highs.keys() != self.highs.keys():
            self.generation += 1
            self.router_id = f"{self.router_base}/{self.generation}"
            for gone in self.highs.keys() - highs.keys():
                self.source_pos.pop(gone, None)
                self.source_hi.pop(gone, None)
                self.idle_since.pop(gone, None)
                self.lead.pop(gone, None)
        self.highs = highs
        self.starts = {tp: position(*tp) for tp in highs} if position is not None else {}
        self.fetched_at = {tp: fetched(*tp) for tp in highs} if fetched is not None else {}

    def watermark(self) -> tuple[float, float]:
        """(watermark, largest occurred_at read) over this router's input partitions.

        Every input partition that has ever held data holds the watermark at the largest
        occurred_at read from it (-inf before its first message, or while its high watermark is
        unknown). Only when every partition has been idle for ``CAUGHT_UP_FOR`` seconds does the
        watermark give way to the largest time read: a high watermark is only as fresh as the
        last fetch, so one look could call a partition caught up that has just received a
        backlog.

        Idle means read to its end with no record read since: it is measured from the first
        look that saw the partition so, and a record read ends it (``idle_since`` keeps the
        offset). Being read to the end at each look was not enough: a router keeping up with a
        live stream reads each batch to its end before this is asked (the envelope's stamp), so
        it looked caught up all along, said "nothing behind" a second into the stream, and the
        clock went to the newest time read on any input. Producers write partitions in batches,
        so another partition's older events were often not readable yet: a deadline fired
        before the event that met it (``payment.paid_not_updated`` raised then resolved in the
        live-equals-replay test, on a loaded machine). Now a stream that flows holds the clock
        at its slowest input, as Flink's does, and the clock jumps only once input stops.

        An input idle for ``CAUGHT_UP_FOR`` holds nothing back on its own either (Flink's
        ``withIdleness``): once idleness meant idleness, a partition read to its end and quiet
        would have held the clock at its last time for as long as any other input flowed, and
        everything read after that time would have waited, parked. What reaches it later is
        read at the clock, as any late event is.

        Idle time is measured in fetch responses when the consumer tells when it last had one
        for the partition (``look``'s ``fetched``): a second from the first look at its end to
        a fetch response still showing that end, not a second of wall time. A router starved of
        CPU for over a second (its loop blocked, fetch responses unread) woke with the high
        watermarks of before, took its inputs for idle and moved the clock past what had
        arrived meanwhile. Without ``fetched``, wall time.

        The wait matters most for a partition with nothing read here and nothing to read
        (empty, or its committed offset at its end: another router read it all), and a
        watermark-exempt one (the blacklist) read to its end: they hold nothing back once they
        have looked so for ``CAUGHT_UP_FOR``, not at the first look. A router that joined while the
        input was being written took every partition for read to its end on the high
        watermarks of its first fetch, reported "nothing behind", and the clock went past the
        events that reached those partitions a moment later (the join/leave rebalance test).
        An exempt partition with something unread holds the watermark at its last time (-inf
        before its first message): the blacklist is read before the orders it names, as replay
        reads them (a blacklist entry routed by one worker half a second after the order it
        names, routed by the other, lost ``fraud.blacklisted``); it never holds once read.
        """
        holds = []
        caught_up = True
        top = -INF
        now = self.wall()
        for tp, high in self.highs.items():
            hi = self.source_hi.get(tp, -INF)
            exempt = tp[0] in self.watermark_exempt
            if not exempt:
                top = max(top, hi)
            pos = self.source_pos.get(tp)
            if not self._read_to_end(tp, high):
                self.idle_since.pop(tp, None)
                caught_up = False
            else:
                if self._idle_for(tp, pos, now) >= CAUGHT_UP_FOR:
                    continue  # idle (see above): holds nothing back
            holds.append(hi)
        if not caught_up:
            self.caught_up_since = None
        elif self.caught_up_since is None:
            self.caught_up_since = now
        if caught_up and self._caught_up_for(now) >= CAUGHT_UP_FOR:
            return INF, top
        return (min(holds) if holds else INF), top

    def _idle_for(self, tp: tuple[str, int], pos: int | None, now: float) -> float:
        """How long input partition ``tp``, read to its end, has been idle (see ``watermark``):
        0 at its first look so or when a record was read since, which also ends the inputs'
        common idleness (``caught_up_since``)."""
        since = self.idle_since.get(tp)
        if since is None or since[1] != pos:
            self.idle_since[tp] = (now, pos)
            self.caught_up_since = None
            return 0.0
        return self._evidence(tp, now) - since[0]

    def _evidence(self, tp: tuple[str, int], now: float) -> float:
        """The latest time this router knows ``tp``'s state at: its last fetch response, when
        the consumer tells, else now."""
        fetched = self.fetched_at.get(tp)
        return now if fetched is None else min(now, fetched)

    def _caught_up_for(self, now: float) -> float:
        """How long every input has been idle: since ``caught_up_since``, up to the oldest of
        their last fetch responses (see ``watermark``)."""
        since = self.caught_up_since
        if since is None:
            return 0.0
        return min((self._evidence(tp, now) for tp in self.highs), default=now) - since

    def _read_to_end(self, tp: tuple[str, int], high: int | None) -> bool:
        """Input partition ``tp`` read to ``high`` (its high watermark at the last ``look``):
        its last record read here, or nothing read here and nothing to read (empty, or its
        committed offset at its end). An unknown high watermark is never the end."""
        if high is None:
            return False
        pos = self.source_pos.get(tp)
        if pos is not None:
            return pos + 1 >= high
        start = self.starts.get(tp)
        return high == 0 or (start is not None and start >= high)

    def ahead(self, drift: float) -> set[tuple[str, int]]:
        """Input partitions read more than ``drift`` seconds of event time past the clock: the
        router pauses them (Flink's watermark alignment).

        Every event read ahead of the clock waits, parked in its shard, until the clock (the
        slowest input) reaches it: a backlog read at the same rate of messages on every input
        partition parks most of what the fast ones read (a sparse stream covers hours of event
        time while a dense one covers minutes), up to a whole backfill. Pausing the fast ones
        bounds what waits to about ``drift`` seconds of input plus what was fetched before the
        pause, and loses or reorders nothing: a paused partition is read on from where it
        stopped.

        The clock is the smaller of the slowest partition with a backlog and this router's
        ``watermark``: a partition read to its end holds the watermark at its last time (-inf
        when nothing was read from it: an empty one, the commands topic) until it has been idle
        for ``CAUGHT_UP_FOR``, and everything read meanwhile waits. A partition that holds is
        never paused itself (its time is the clock, or -inf: nothing read), so it goes on being
        fetched and its idleness, measured in fetch responses, ends the hold. In a live stream
        every input is within seconds of the others and nothing is paused.

        Such a hold (the clock below the slowest input with a backlog: held by one with nothing
        left to read, or the blacklist) ends by itself within about a second, and what is read
        meanwhile waits in memory. Paused at that clock, a backfill stopped for the whole hold:
        at its start (the empty command partitions, then the blacklist: ~1.5 s) and each time an
        input ran dry before the others (~1 s), ~2.5 s with the worker's loop idle in the
        benchmark's 10 s read. Read on past it at the pace of the backlog instead, the start of
        the alignment test parked 22.5k of its 82k events at once, against 10.5k. So the inputs
        read on during a hold only until ``hold_read_ahead`` records wait past the clock (the
        ``lead`` counts, over every input), then pause at it as before: what a hold can add to
        memory is that count, whatever the size of the backlog.

        With ``align_lead``, a partition is paused only once it also holds that many records the
        clock has not reached (``_past``): by event time alone a backfill was read one partition
        per fetch. A partition read to its end with a time past the clock is paused too, once the
        read-ahead is spent: what reaches it stays in Kafka. The watermark-exempt topics (the
        blacklist) neither pause nor are paused. Uses the high watermarks of the last ``look``.
        ``drift`` <= 0: nothing is paused.
        """
        if drift <= 0:
            return set()
        read: list[tuple[tuple[str, int], float]] = []
        clock, _ = self.watermark()
        backlog = INF  # the slowest input with something left to read
        for tp, high in self.highs.items():
            if tp[0] in self.watermark_exempt:
                continue
            hi = self.source_hi.get(tp, -INF)
            read.append((tp, hi))
            if not self._read_to_end(tp, high):
                backlog = min(backlog, hi)
        clock = min(clock, backlog)
        if clock == INF:
            self.lead.clear()
            return set()
        past = {tp: self._past(tp, clock) for tp, _ in read}  # every input's count pruned
        limit = clock + drift
        if backlog > clock and sum(past.values()) < self.hold_read_ahead:
            limit = backlog + drift  # a hold: read on at the backlog's pace (see above)
        lead = self.align_lead
        return {tp for tp, hi in read if hi > limit and past[tp] >= lead}

    def _past(self, tp: tuple[str, int], clock: float) -> int:
        """How many records read from input ``tp`` the clock has not reached (0 when nothing is
        counted: neither ``align_lead`` nor ``hold_read_ahead``); forgets those it has reached.

        With ``align_lead``, alignment pauses an input only once it is ahead by both measures:
        by event time alone, a backfill was read one partition at a time: one fetch of a
        partition (a few hundred records) spans more event time than the drift (at a shop's
        rate, minutes; in the benchmark's day, most of an hour), so each fetch put its partition
        past the drift and paused it, every other input was paused already, and each round trip
        to the broker brought one partition's records instead of one for each (the worker at
        0.6-0.7 of bare Faust, its loop idle ~40 % of the time). With a count, every input reads
        on until it holds ``align_lead`` records ahead of the clock, so what waits is bounded by
        that count per input, plus the drift, as before.
        """
        lead = self.lead.get(tp)
        if lead is None:
            return 0
        while lead and lead[0] <= clock:
            lead.popleft()
        return len(lead)

    @property
    def parked(self) -> int:
        """Events applied ahead of their partition's clock and not reached by it yet, and
        events waiting in the shell for it (``waiting``)."""
        return sum(len(at) for at in self.parked_at.values()) + sum(
            len(queue) for queue in self.waiting.values()
        )

    def _stamp(self) -> list[tuple[str, bytes]]:
        wm, top = self.watermark()
        return [(WATERMARK_HEADER, f"{self.router_id} {wm!r} {top!r}".encode())]

    def send_watermarks(
        self,
        assigned: Iterable[tuple[str, int]],
        highwater: Callable[[str, int], int | None],
        expected: Iterable[tuple[str, int]] | None = None,
        position: Callable[[str, int], int | None] | None = None,
        fetched: Callable[[str, int], float | None] | None = None,
    ) -> None:
        """Tell every shard partition how far this router's inputs have been read, and which
        inputs it reads (``expected``: every input partition of the group, when known)."""
        assigned = list(assigned)
        self.flush()  # a report must not overtake events routed before it
        self.look(assigned, highwater, position, fetched)
        stamp = self._stamp()
        body = orjson.dumps(
            {
                "covers": sorted(f"{t}/{p}" for t, p in self.highs),
                "expect": sorted(
                    f"{t}/{p}" for t, p in (assigned if expected is None else expected)
                ),
            }
        )
        for p in range(self.partitions):
            self.send_shard(WATERMARK.encode(), body, p, stamp)

    def _heard(self, partition: int, stamp: bytes, report: bytes | None = None) -> None:
        try:
            router, wm_text, hi_text = stamp.decode().split(" ")
            wm, hi = float(wm_text), float(hi_text)
        except ValueError:
            return
        base, _, gen_text = router.partition("/")
        generation = int(gen_text) if gen_text.isdigit() else 0
        newest = self.generations.setdefault(partition, {})
        if generation < newest.get(base, generation):
            return  # an older generation of a router already superseded here (a requeued stamp)
        newest[base] = generation
        routers = self.reports.setdefault(partition, {})
        covers: frozenset[str] | None = None
        if report:
            try:
                data = orjson.loads(report)
                covers = frozenset(data["covers"])
                self.expected[partition] = frozenset(data["expect"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return
            # this generation now vouches for its inputs; its older ones vouch for nothing (the
            # inputs they read and this one does not are another router's, or not yet anyone's,
            # and the coverage check below holds the clock until someone reports them)
            for old in [r for r in routers if r != router and r.partition("/")[0] == base]:
                del routers[old]
        elif router in routers:
            covers = routers[router][3]
        routers[router] = (wm, hi, self.wall(), covers)
        clock = self._watermark_clock(partition)
        if clock > self.event_clock.get(partition, -INF):
            self.event_clock[partition] = clock
            parked = self.parked_at.get(partition)
            while parked and parked[0] <= clock:
                heapq.heappop(parked)  # the next sweep or step of the partition applies it

    def _watermark_clock(self, partition: int) -> float:
        """The smallest watermark of the live routers, once they cover every input partition.

        While the routers heard from do not cover all inputs (a worker has joined and not
        reported yet, or one has left and its inputs are not picked up yet), nobody can vouch
        for the missing inputs, so the clock holds. A router caught up vouches for its inputs
        for ``CAUGHT_UP_VALID`` after its report; a silent one holds the clock at its last
        largest time read until it expires.
        """
        now = self.wall()
        live = [r for r in self.reports.get(partition, {}).values() if now - r[2] <= ROUTER_EXPIRY]
        covered: set[str] = set()
        for _, _, _, covers in live:
            if covers is None:
                return -INF
            covered |= covers
        if not live or not covered >= self.expected.get(partition, frozenset()):
            return -INF
        # a router killed with -9 while caught up would vouch for its inputs until it expires,
        # and the others' clock would pass what reaches them before the takeover routes it
        behind = [
            hi if wm == INF and covers and now - heard > CAUGHT_UP_VALID else wm
            for wm, hi, heard, covers in live
        ]
        behind = [wm for wm in behind if wm != INF]
        return min(behind) if behind else max(hi for _, hi, _, _ in live)

    def _publish(self, exceptions: list[ExceptionEvent], arrival: float | None = None) -> None:
        """Send exceptions; ``arrival`` is set when they come from reading one event."""
        self._send_encoded(self._encode(exceptions), arrival)

    def _encode(self, exceptions: list[ExceptionEvent]) -> list[tuple[ExceptionEvent, bytes]]:
        return [(exc, encode_exception(exc)) for exc in exceptions]

    def _send_encoded(
        self, sends: list[tuple[ExceptionEvent, bytes]], arrival: float | None
    ) -> None:
        for exc, body in sends:
            self.send_exception(exc.subject.encode(), body, cloudevent_headers(exc, self.source))
            self.counters.published += 1
            if self.on_exception is not None:
                self.on_exception(exc, arrival)

    def persist(self, partitions: Iterable[int] | None = None) -> int:
        """Write every shard changed since the last call to the changelog; returns how many.

        A write-back cache, as Kafka Streams keeps in front of its state stores: a shard that
        changes many times between two offset commits is serialized and written once, not once
        per batch (per batch it was one changelog message per event, most of stage 2's cost).
        The worker calls this right before Faust commits input offsets (and before it hands
        partitions away or stops), so the changelog always holds the state of at least every
        committed event; a worker killed in between resumes from the last commit with the state
        of that commit or later and re-reads the rest, as it always did (the engine is
        idempotent, ids come from input). A partition with ``DIRTY_LIMIT`` changed shards
        writes them at once, which bounds the work a commit does.
        """
        written = 0
        for partition in list(self.engines) if partitions is None else partitions:
            if partition in self.engines:
                self._park_waiting(partition)  # an offset commit follows: none in memory alone
                written += self._persist(partition)
        return written

    def _persist(self, partition: int, commit: bool = True) -> int:
        """Write ``partition``'s changed shards, then its positions (``read_to``), last: the
        changelog partition keeps the order it is written in, so positions read back at a
        recovery never cover an item whose shard was not written.

        Before a commit (``persist``), nothing waits in the shell. Otherwise (``commit`` False:
        ``DIRTY_LIMIT`` reached in a batch) events read may still wait there, in memory alone:
        positions that covered them would make a restart skip them, so they wait for the
        commit."""
        engine = self.engines[partition]
        written = 0
        for key, state in engine.take_dirty().items():
            if key == BROADCAST:
                key = broadcast_key(partition)
            value = None if state is None else orjson.dumps(state)
            self.send_changelog(partition, key.encode(), value)
            written += 1
        if commit and partition in self.read_moved:
            self.read_moved.discard(partition)
            positions = orjson.dumps({READ_TO: self.read_to.get(partition, {})})
            self.send_changelog(partition, positions_key(partition).encode(), positions)
            written += 1
        if isinstance(engine.shards, ShardCache):
            engine.shards.flushed()  # the store has every change: dirty shards may leave RAM
        return written

    # --- recovery and rebalancing --------------------------------------------------------------

    def restore(self, items: Iterable[tuple[bytes, bytes | None]], owned: set[int]) -> int:
        """Build the engine of every owned partition from the recovered table; returns how many
        shards it loaded.

        Each engine is built from the table alone, never one left over from an earlier
        ownership or created by a stray message, and on every call, not only for partitions
        new to this worker: Faust (0.15.3) runs the table's recovery callbacks of a recovery
        that a new rebalance interrupted, with the table read half-way, before it checks the
        generation and recovers the new assignment, whose callback then comes too. Engines
        built on the first call missed shards (the rebalance test caught wrong verdicts and a
        stalled clock, about one run in three). The caller persists changed shards first
        (``persist``), so the table holds everything the engines knew.
        """
        fresh = set(owned)
        for partition in fresh:
            self.engines.pop(partition, None)
            self.read_to.pop(partition, None)
        self.assigned |= owned
        loaded = 0
        for key_bytes, value in items:
            if value is None:
                continue
            key = key_bytes.decode()
            if key.startswith(BROADCAST):
                partition = int(key.rpartition(":")[2])
                if partition not in fresh:
                    continue
                if key == positions_key(partition):
                    self._restore_positions(partition, value)
                else:
                    self.engine(partition).restore(BROADCAST, orjson.loads(value))
                continue
            # an order's action records live beside g:actions, not where their key hashes
            partition = partition_for(home_key(key).encode(), self.partitions)
            if partition in fresh:
                self.engine(partition).restore(key, orjson.loads(value))
                loaded += 1
        for partition in fresh:
            self.engine(partition).take_dirty()  # restored state is already in the changelog
        return loaded

    def restore_store(
        self,
        owned: set[int],
        timers: Callable[[int], TimerSource],
        load: Callable[[int], Loader],
        capacity: int,
        budget: int = 0,
    ) -> int:
        """``restore`` for state in a local store: shards stay there, read through a bounded
        cache (``capacity`` shards and ``budget`` stored bytes per partition, 0: no byte bound);
        returns how many stored deadlines were read now.

        The store keeps every shard's deadlines ordered by due time (its timer index): each new
        partition's engine reads them a chunk at a time as its clock advances
        (``Engine.index_lazily``), so a start reads what is due soon, not every shard.
        """
        fresh = owned - self.assigned
        for partition in fresh:
            self.engines.pop(partition, None)
            self.read_to.pop(partition, None)
        self.assigned |= owned
        indexed = 0
        for partition in fresh:
            engine = self.engine(partition)
            read = load(partition)
            engine.use_store(read, capacity, budget)
            # the partition's copy of the blacklist is engine memory, not a cached shard: read
            # it now, or a restart forgets every entry read before it (the topic's offsets are
            # committed past them); so are its positions (``_unread``)
            blacklist = read(broadcast_key(partition))
            if blacklist is not None:
                engine.restore(BROADCAST, orjson.loads(blacklist))
            positions = read(positions_key(partition))
            if positions is not None:
                self._restore_positions(partition, positions)
            indexed += engine.index_lazily(timers(partition))
            engine.take_dirty()
        return indexed

    def _restore_positions(self, partition: int, value: bytes) -> None:
        """Partition ``partition``'s positions record (``positions_key``) into ``read_to``."""
        read = orjson.loads(value).get(READ_TO)
        self.read_to[partition] = dict(read) if isinstance(read, dict) else {}
        self.read_moved.discard(partition)

    def revoke(self, partitions: set[int]) -> None:
        """Drop the engines of partitions this worker no longer owns (their state is in the
        changelog, where the new owner recovers it): their changed shards are written first."""
        self.persist(partitions)
        self.assigned -= partitions
        for partition in partitions:
            self.engines.pop(partition, None)
            self.event_clock.pop(partition, None)
            self.reports.pop(partition, None)
            self.generations.pop(partition, None)
            self.parked_at.pop(partition, None)
            self.waiting.pop(partition, None)  # parked by ``persist`` above: none is left
            self.read_to.pop(partition, None)  # written by ``persist`` above

    @property
    def owned(self) -> set[int]:
        return set(self.assigned)
