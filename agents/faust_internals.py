"""Every place the worker reaches into Faust's or aiokafka's internals, with its fallback.

Kept in one module so an upgrade of faust-streaming (0.15.3) or aiokafka (0.14.0) has one file
to review, and ``tests/agents/test_faust_internals.py`` fails when an upgrade removes or changes
an attribute leaned on here. What each one is for:

- ``TunedApp``: Faust's app without the ``Monitor`` sensor, with ``direct_delivery`` in the
  consumer, a hook before every producer flush (``before_flush``: the worker writes its state
  there, right before Faust commits) and a hook when an exception leaves an agent
  (``on_agent_error``: the worker ends the process there, before Faust acks the batch).
- ``direct_delivery``: the consumer's ``wait_first`` without four tasks per message.
- ``StreamGate``: no stream record delivered during a rebalance, and every record the fetch
  loop did not hand to a stream fetched again (Faust lost input at a rebalance without it); a
  short fetch wait while Faust has partitions out of the fetch under buffer pressure
  (``Consumer._buffered_partitions``, ``PRESSURE_POLL``).
- ``tune_fetcher``: aiokafka's fetch wait and the shard topic's records first, in a buffer
  where a partition deleted twice (a seek from another thread) is not an error (``Buffered``).
- ``committed_offset``: Faust's committed offset of an input partition (the watermark).
- ``InputPause``: input partitions read too far ahead of the watermark left out of the fetch
  (through the ``StreamGate``), until the others catch up.
- ``read_offsets``: how far the fetcher has delivered each partition (the lag gauge).
- ``fetch_times``, ``app_fetch_times``: when the consumer last had a fetch response for an input
  partition (aiokafka's ``last_poll_timestamp``), the evidence ``Shell.watermark`` measures an
  input's idleness by; a router whose loop was blocked has no newer response, so its inputs
  cannot age into "idle" on high watermarks from before the stall.
- ``aiokafka_producer``: Faust's own aiokafka producer, for the outbox's record batches.
- ``rocksdb_partition``, ``register_store``: one partition's database of Faust's RocksDB store
  and the store's URL scheme, for the local state store (``agents/store.py``; its ``Store``
  subclass overrides ``on_rebalance``, a public hook).
- ``PromptTableManager``: Faust's table manager without the 1 s sleep that held back the
  consumer's JoinGroup at every start.
- ``group_member``: the consumer's member id in its group (``agents/membership.py`` records it
  so that a restart after kill -9 ends the dead incarnation's membership before joining).

Fallbacks: a missing attribute leaves Faust's own behaviour (``tune_fetcher``, ``committed_offset``
log or return None; ``fetch_times`` returns None and the clock measures idleness in wall
time; ``group_member`` returns None and a restart waits for the old session); the hooks on
the app are methods Faust calls itself, so a rename there is what the test catches.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.sensors import Sensor
from faust.tables import TableManager
from faust.types import TP
from mode.services import WaitResults

log = logging.getLogger("orderwatch.worker")


class Buffered(collections.OrderedDict[Any, Any]):
    """aiokafka's buffer of fetched records (``Fetcher._records``), where deleting a partition
    that is already gone is not an error.

    Faust seeks from the worker's thread (``AIOKafkaConsumerThread.seek`` calls aiokafka's
    ``seek`` directly, and aiokafka's ``seek_to`` deletes the partition's buffered records),
    while the consumer's own thread hands records out of the same buffer
    (``fetched_records``: read the entry, take its records, delete it). A seek between the two
    (the committed offsets of partitions taken over from a killed worker) made the second
    delete raise ``KeyError`` in the consumer's thread, and Faust crashed the surviving worker
    (found by ``test_kill_9_of_one_of_two_workers_loses_nothing_and_renames_nothing``). Both
    deletes mean "nothing buffered for this partition", so a missing entry is that already; the
    records of the other partitions in the same hand-out are delivered as usual. Replacing the
    buffer while the fetch loop runs costs at most a fetch made again from the partition's
    position (an entry added to the old buffer meanwhile), never a record.
    """

    def __delitem__(self, key: Any) -> None:
        with contextlib.suppress(KeyError):
            super().__delitem__(key)


def shard_first(fetcher: Any, topic: str) -> Any:
    """``fetcher.fetched_records`` serving ``topic``'s buffered records before any other's, and
    the other partitions in turn.

    aiokafka serves its buffered partitions in the order their fetches came back, each drained
    up to ``max_records`` before the next: a backlog was read one input partition at a time,
    a whole fetch (1 MiB, thousands of events) of each, so in event time the inputs ran hours
    apart and everything read ahead of the slowest waited, parked. A partition just served
    goes to the back of the queue, so a backlog's partitions are read side by side and the
    watermark alignment (``Shell.ahead``) can hold them together.
    """
    original = fetcher.fetched_records
    # an OrderedDict: topic-partition -> records, served in order; made tolerant (``Buffered``)
    buffered = fetcher._records = Buffered(fetcher._records)

    async def fetched_records(*args: Any, **kwargs: Any) -> Any:
        for tp in [tp for tp in buffered if tp.topic == topic]:
            buffered.move_to_end(tp, last=False)
        drained = await original(*args, **kwargs)
        for tp in drained:
            if tp in buffered:
                buffered.move_to_end(tp)  # the others' turn next (see the docstring)
        return drained

    return fetched_records


def tune_fetcher(app: faust.App, fetch_max_wait: float, shard_topic: str) -> bool:
    """Two changes to the consumer's fetcher, both on aiokafka internals; False if impossible.

    Faust fixes the fetch wait at 1.5 s; a broker that holds a fetch that long when a
    partition is quiet (Tansu does) adds it to detection latency.

    The fetcher hands out what it has buffered partition by partition, in the order the
    fetches came back, and buffers up to 1 MiB per partition: with 20 input partitions
    behind, the envelopes stage 1 had just written waited behind seconds of input, so the
    detector fell ever further behind the router while a backlog was read. Stage 2 goes
    first, so what stage 1 produces is detected as it is read (Flink's downstream-first
    backpressure); ``broker_max_poll_records`` keeps each hand-out short enough for that
    to matter.
    """
    try:
        fetcher = app.consumer._thread._ensure_consumer()._fetcher  # type: ignore[attr-defined]
        fetcher._fetch_max_wait_ms = int(fetch_max_wait * 1000)
        if not getattr(fetcher, "_orderwatch_shard_first", False):
            fetcher.fetched_records = shard_first(fetcher, shard_topic)
            fetcher._orderwatch_shard_first = True
    except Exception:  # a later Faust or aiokafka without these internals: keep theirs
        log.warning("could not tune the consumer's fetcher")
        return False
    return True


def committed_offset(app: faust.App, topic: str, partition: int) -> int | None:
    """Faust's committed offset of a partition: where the consumer restarted reading it at its
    assignment (the seek), then the offset of each commit.

    Not Faust's ``_read_offset``, which this used to read: that is how far the fetcher has
    *delivered* to the streams, ahead of what the router has routed. Right after a rebalance
    the router re-read from the committed offset while the read offset already stood at the
    partition's end, so ``Shell.watermark`` took the partition for read to its end ("nothing
    to read") and, once the other inputs were caught up, moved the clock past events it had
    not routed yet: they came late (the flaky rebalance test, about one run in three on a
    loaded machine, with wrong verdicts or a clock stuck behind).
    """
    try:
        value = app.consumer._committed_offset.get(TP(topic, partition))  # type: ignore[attr-defined]
    except Exception:  # a later Faust without it: the watermark waits for a first read
        return None
    return int(value) if value is not None else None


class InputPause:
    """Pauses and resumes the router's input partitions (watermark alignment, ``Shell.ahead``).

    In the fetch itself (``StreamGate.fetch``, Faust's ``Consumer._getmany``): a paused
    partition is left out of what aiokafka is asked to hand over, so nothing more of it reaches
    the router, while aiokafka keeps at most the one fetch it has buffered for it (bytes, not
    decoded events); resumed, it is read on from the next record. Records already handed over
    are delivered as usual, so nothing is dropped, re-read or reordered.

    Not Faust's ``Consumer.pause_partitions``: it takes the partition out of the very set the
    fetch loop is iterating, and the loop silently skips that partition's records still in hand
    (aiokafka's position is already past them: lost, and the next commit steps over them); and
    the stream buffer's pressure callbacks (``on_buffer_drop``) put a paused partition back.
    Fallback: an app without the gate (not a ``TunedApp``) is never paused.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app

    def apply(self, ahead: set[tuple[str, int]]) -> int:
        """Pause exactly ``ahead``, resume the rest; returns how many are paused."""
        gate: StreamGate | None = getattr(self.app, "stream_gate", None)
        if gate is None:
            return 0
        gate.paused = {TP(topic, partition) for topic, partition in ahead}
        return len(gate.paused)


def read_offsets(consumer: Any) -> Any:
    """How far Faust's fetcher has delivered each partition (the consumer-lag gauge); an empty
    mapping on a Faust without it (the gauge then shows the whole partition as lag)."""
    return getattr(consumer, "_read_offset", {})


def rocksdb_partition(store: Any, partition: int) -> Any:
    """The rocksdict database of one partition of Faust's RocksDB store: the local state store
    (``agents/store.py``) writes shards and its changelog catch-up batches straight into it.
    Faust keeps it behind ``Store._db_for_partition``; no public accessor exists."""
    return store._db_for_partition(partition)


def register_store(scheme: str, target: str) -> None:
    """Make ``store="<scheme>://"`` resolve to ``target`` ("module:Class"): Faust resolves
    stores by URL scheme through ``faust.stores.STORES``' alias table."""
    from faust.stores import STORES

    STORES.aliases[scheme] = target


def aiokafka_producer(app: faust.App) -> Any:
    """Faust's own aiokafka producer: the one Faust flushes before committing offsets."""
    return app.producer._ensure_producer()  # type: ignore[attr-defined]


def direct_delivery(consumer: Any) -> Any:
    """``consumer.wait_first`` that hands a fetched message to its stream without four tasks.

    Faust's fetch loop delivers each message with ``wait_first(callback(message),
    suspend_flow.wait())`` so that a rebalance can cut a blocked delivery short. ``wait_first``
    wraps both in tasks, adds two more for the consumer's stopped and crashed events, and
    cancels the losers: several event-loop turns per message, the largest part of Faust's
    per-event cost (profiled). The callback does not block in practice (it decodes and puts
    without waiting into the stream's queue), so while the flow is not suspended and the consumer
    neither stopped nor crashed, the callback is awaited directly; any other call goes to Faust's
    own ``wait_first``. A rebalance that begins during a direct delivery lets that one message
    through: the stage it reaches handles a message of a just-revoked partition (stage 1 routes
    it, at least once; stage 2 sends it on to the new owner).
    """
    original = consumer.wait_first

    async def wait_first(*coros: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109 (Faust's signature)
        if len(coros) == 2 and timeout is None:
            callback, flow = coros
            frame = getattr(flow, "cr_frame", None)
            if (
                frame is not None
                and frame.f_locals.get("self") is consumer.suspend_flow
                and not consumer.suspend_flow.is_set()
                and not consumer._stopped.is_set()
                and not consumer._crashed.is_set()
            ):
                flow.close()  # never started: nothing to cancel
                return WaitResults([callback], [await callback], False)
        return await original(*coros, timeout=timeout)

    return wait_first


#: the longest the fetch loop waits for records while a stream's buffer is under pressure
PRESSURE_POLL = 0.02


class StreamGate:
    """No stream record is delivered while a rebalance is under way, and every record the fetch
    loop did not hand to a stream is fetched again: Faust 0.15.3 loses input around a rebalance.

    What happened (the join/leave rebalance test, about one run in two on a loaded machine, with
    the offsets of every delivery, ack, seek and commit traced): Faust's recovery resumes the
    consumer's flow before it is done (to read the changelogs, or at once when there is nothing
    to read); ``Recovery.on_recovery_completed`` then resumes the stream partitions, awaits
    ``perform_seek`` (the committed offsets, through the consumer's thread: 40-300 ms here) and
    only after it calls ``flow_control.resume()``, which *clears every stream's queue*. During
    that seek the fetch loop delivered an input partition's records 48-69 to the router's queue
    and moved Faust's read offset to 69; the seek set it back to 48; the clear dropped 49-69
    before the router read them; the loop went on with records still in hand (70, 71...), took
    48 -> 70 for a hole in the partition (``_add_gap(tp, 49, 70)``: a later commit steps over
    it as if acked) and dropped the re-fetched 49-69 as already read ("DROPPED MESSAGE ROFF").
    21 events were never routed: the watermark went past them (exceptions replay does not
    raise, under new ids) or, when they were a partition's whole tail, never did (-inf).

    So, from ``App.on_rebalance_start`` (the consumer's rebalance listener calls it first) to
    ``App.on_rebalance_end`` (after the seek, the clear and the resume), while
    ``app.rebalancing`` is true, ``Consumer._getmany`` asks aiokafka for changelog partitions
    only; aiokafka keeps the others' fetched records buffered (a seek replaces them), so no
    stream record is delivered, cleared, read past or taken for a gap. Stream records that come
    back anyway (a fetch that started before the rebalance, or while the flow is stopped, when
    Faust drops them itself) are dropped here and the gate stays shut until a seek started
    after them has run (the fetch loop seeks itself if no rebalance is left to do it). A seek
    rewinds a stream partition without a committed offset to its start too: aiokafka's
    ``seek_to_committed`` leaves those where the fetcher stood, past what was dropped. A
    delivery under way when a seek ran (a full queue, a full producer buffer) sets its read
    offset after the seek's: ``getmany`` puts the seek's back.

    While a stream's buffer is under pressure, a fetch waits ``PRESSURE_POLL`` at most, not the
    loop's second. Faust takes a partition out of the fetch when its stream's queue passes 80 %
    (``Consumer.on_buffer_full``, ``_buffered_partitions``) and puts it back when the queue has
    drained to 40 %, but a fetch already waiting asks only for what was left: with the router
    one stream over every input partition, that was the shard topic's partitions, and the loop
    waited up to a second for them while the router had drained its queue and sat idle
    (``bench_pipeline.py --only throughput``: 10.2 s of wall time on 7.5 s of CPU, 0.62-0.78 of
    bare Faust). Blocking the loop on the full queue instead (no removal) was faster but stalled
    a rebalance in CI (a cleared queue does not wake a blocked ``put``); a short wait keeps
    Faust's removal and its rebalance behaviour.
    """

    def __init__(self, app: Any, consumer: Any) -> None:
        self.app = app
        self.consumer = consumer
        #: stream records dropped (a count), and how many of them a completed seek fetches again
        self.dropped = 0
        self.rewound = 0
        #: completed seeks, and the read offsets the last one set
        self.seeks = 0
        self.seeked: dict[Any, Any] = {}
        #: input partitions not fetched for now (``InputPause``)
        self.paused: set[Any] = set()

    def install(self) -> None:
        consumer = self.consumer
        self._getmany = consumer._getmany
        self._iterate = consumer.getmany
        self._perform_seek = consumer.perform_seek
        consumer._getmany = self.fetch
        consumer.getmany = self.deliver
        consumer.perform_seek = self.perform_seek

    def closed(self) -> bool:
        """Stream partitions are not fetched: a rebalance, or a rewind still to do."""
        return bool(self.app.rebalancing) or self.rewound < self.dropped

    def _stream(self, tp: Any) -> bool:
        return tp.topic not in self.app.tables.changelog_topics

    async def fetch(self, active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109 (Faust's)
        """``Consumer._getmany``: changelog partitions alone while the gate is shut."""
        app, consumer = self.app, self.consumer
        if self.rewound < self.dropped and not app.rebalancing and consumer.assignment():
            await self.perform_seek()  # no rebalance is left to fetch the dropped again
        rebalances = app.rebalancing_count
        closed = self.closed()
        if active_partitions is not None and (closed or self.paused):
            # a new set: Faust's own is the one its loop checks each record against
            active_partitions = {
                tp
                for tp in active_partitions
                if not (self._stream(tp) and (closed or tp in self.paused))
            }
            if not active_partitions:
                # never an empty set: aiokafka takes "no partitions" for "every partition"
                await asyncio.sleep(min(timeout, 0.1))
                return {}
        if getattr(consumer, "_buffered_partitions", None):
            # partitions out of the fetch under buffer pressure come back as their stream drains
            # (``on_buffer_drop``), and only the next call asks for them (see the class)
            timeout = min(timeout, PRESSURE_POLL)
        records = await self._getmany(active_partitions=active_partitions, timeout=timeout)
        if records and (
            self.closed() or app.rebalancing_count != rebalances or not consumer.flow_active
        ):
            stale = [tp for tp in records if self._stream(tp)]
            if stale:
                for tp in stale:
                    del records[tp]
                self.dropped += 1
        return records

    async def deliver(self, timeout: float) -> Any:  # noqa: ASYNC109 (Faust's signature)
        """``Consumer.getmany``, the generator the fetch loop iterates."""
        read_offset = self.consumer._read_offset
        batch = self._iterate(timeout)
        rewound = False
        try:
            async for tp, message in batch:
                if rewound and self._stream(tp):
                    continue  # fetched before the seek that ran meanwhile: it fetches it again
                seeks = self.seeks
                yield tp, message
                if self.seeks != seeks:
                    # the loop has just set the read offset to this message, past what the
                    # seek that ran during its delivery fetches again
                    read_offset[tp] = self.seeked.get(tp)
                    rewound = True
                    log.warning("a seek ran during a delivery on %s: its read offset restored", tp)
        finally:
            await batch.aclose()

    async def perform_seek(self) -> None:
        """``Consumer.perform_seek``: every assigned stream partition back to its committed
        offset, or to its start if it has none; what was dropped before it is fetched again."""
        dropped = self.dropped
        consumer = self.consumer
        await self._perform_seek()
        committed = consumer._committed_offset
        for tp in consumer.assignment():
            if self._stream(tp) and not committed.get(tp):
                await consumer.seek(tp, 0)  # its start (auto_offset_reset is "earliest")
        self.seeked = dict(consumer._read_offset)
        self.seeks += 1
        self.rewound = max(self.rewound, dropped)


class TunedApp(faust.App):
    """Faust's app with the worker's runtime changes (the pipeline bench runs a bare agent on it
    too, to show what they move on their own).

    - No ``Monitor`` sensor: it keeps per-event statistics for Faust's web ``/stats`` page, which
      this worker never serves (our metrics are Prometheus, from ``telemetry``), yet it ran on
      every event of every stream. Faust's direct calls into ``app.monitor`` (commit and
      end-offset tracking) still work: only the per-event sensor hooks are gone.
    - ``direct_delivery`` in the consumer's fetch loop, and the ``StreamGate`` around it.
    - ``before_flush``, awaited before each flush of the producer; ``after_flush`` after it.
    - ``on_agent_error``, awaited when an exception leaves an agent.
    """

    #: awaited before every flush of Faust's producer, which Faust does right before it commits
    #: input offsets (and when it stops): the worker writes its changed state there
    before_flush: Callable[[], Awaitable[None]] | None = None
    #: called after each flush: what was sent is on the broker (the store records its offsets)
    after_flush: Callable[[], object] | None = None
    #: awaited when an exception leaves an agent, before Faust's supervisor restarts it: the
    #: worker ends the process there (``app.crash``), before the batch's events are acked
    on_agent_error: Callable[[Any, BaseException], Awaitable[None]] | None = None

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """Faust passes this method as ``on_error`` to every agent it creates."""
        if self.on_agent_error is not None:
            await self.on_agent_error(agent, exc)
        await super()._on_agent_error(agent, exc)

    def _new_producer(self) -> Any:
        producer = super()._new_producer()
        flush = producer.flush

        async def flush_state_first() -> None:
            if self.before_flush is not None:
                await self.before_flush()
            await flush()
            if self.after_flush is not None:
                self.after_flush()

        producer.flush = flush_state_first  # type: ignore[method-assign]
        return producer

    #: the consumer's ``StreamGate`` (``InputPause`` pauses input partitions through it)
    stream_gate: StreamGate | None = None

    def _new_consumer(self) -> Any:
        consumer: Any = super()._new_consumer()
        consumer.wait_first = direct_delivery(consumer)
        self.stream_gate = StreamGate(self, consumer)
        self.stream_gate.install()
        return consumer

    def on_init_dependencies(self) -> Any:
        dependencies = super().on_init_dependencies()
        with contextlib.suppress(KeyError):
            self.sensors.remove(self.monitor)
        # a sensor whose hooks do nothing: Faust warns about every rebalance without any sensor
        self.sensors.add(Sensor())
        return dependencies


Fetched = Callable[[str, int], float | None]


def fetch_times(consumer: Callable[[], Any]) -> Fetched:
    """``fetched(topic, partition)``: wall seconds of the last fetch response for the partition
    of the aiokafka consumer ``consumer()`` returns; None before its first one, when it is not
    assigned, or when the consumer cannot tell (not started, another aiokafka)."""

    def fetched(topic: str, partition: int) -> float | None:
        try:
            ms = consumer().last_poll_timestamp(TopicPartition(topic, partition))
        except Exception:  # not assigned (an assertion in aiokafka), not started, renamed
            return None
        return None if ms is None else float(ms) / 1000.0

    return fetched


def app_fetch_times(app: faust.App) -> Fetched:
    """``fetch_times`` of a Faust app's aiokafka consumer (Faust's consumer thread holds it)."""
    return fetch_times(lambda: app.consumer._thread._ensure_consumer())  # type: ignore[attr-defined]


def group_member(app: faust.App) -> str | None:
    """The member id the group coordinator gave the worker's consumer at its last join, or None.

    ``agents/membership.py`` keeps it in the state directory, so that a worker restarted on that
    directory after a kill -9 ends the dead incarnation's membership (LeaveGroup) before it joins
    instead of waiting for the broker to expire its session. aiokafka holds it on the consumer's
    group coordinator (``AIOKafkaConsumer._coordinator.member_id``); no public accessor exists.
    Fallback: None (nothing is recorded; a restart waits for the session, as before).
    """
    try:
        consumer = app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
        member = consumer._coordinator.member_id
    except Exception:  # a later Faust or aiokafka without these internals
        return None
    return member if isinstance(member, str) and member else None


async def leave_group(options: dict[str, Any], group: str, member_id: str, within: float) -> int:
    """Send one LeaveGroup for ``member_id`` of ``group`` to its coordinator; the error code.

    aiokafka sends LeaveGroup only for its own consumer as it closes; ending a member id the
    process does not hold (a killed incarnation's, ``agents/membership.py``) takes its client
    and protocol layer: ``AIOKafkaClient``'s coordinator lookup and ``LeaveGroupRequest``
    (v0/v1: group and member id, what every Kafka since 0.9 and Tansu answer). ``options``:
    bootstrap servers and credentials (``store.consumer_options``). Raises on a broker that does
    not answer within ``within`` seconds; the caller goes on without it.
    """
    from aiokafka import AIOKafkaClient
    from aiokafka.client import CoordinationType
    from aiokafka.protocol.group import LeaveGroupRequest

    client = AIOKafkaClient(**options, request_timeout_ms=max(1, int(within * 1000)))
    try:
        async with asyncio.timeout(within):
            await client.bootstrap()
            node = await client.coordinator_lookup(CoordinationType.GROUP, group)
            response = await client.send(node, LeaveGroupRequest(group, member_id))
            return int(response.error_code)
    finally:
        await client.close()


class PromptTableManager(TableManager):
    """Faust's ``TableManager`` without the one-second sleep its ``on_start`` begins with.

    Faust sleeps so that tables an app declares while it starts are registered before the
    manager freezes the set (``_update_channels``: after it, adding a table raises). The
    worker declares its one table when it builds the topology, before the app starts, so the
    sleep only delayed the consumer's JoinGroup, which waits for the changelog topics the
    manager subscribes here: a second of every cold start and every restart (measured:
    JoinGroup sent 1.0 s after "TableManager: Starting"; docs/benchmarks.md, "Issue 13:
    restart-to-ready and group membership"). The rest is Faust's ``on_start`` as is;
    ``test_faust_internals`` fails if Faust's changes. Passed as the app's ``TableManager``
    setting (``Worker._make_app``); fallback: leaving the setting out restores Faust's.
    """

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()
