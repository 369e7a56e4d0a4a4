"""The Faust application: topics, the state table, two agents and the sweep timer.

``Worker`` builds it like a topology: ``Topology`` (topics and the table), ``Persistence`` (the
changelog writes at each commit), ``Inputs`` (the router's view of its input partitions),
``Router`` and ``Detector`` (the two agents), ``Sweeper`` (the timer) and ``Rebalancing``
(recovery and revocation), each a small object over one ``Shell``. Whatever reaches into Faust
or aiokafka internals lives in ``faust_internals``.

Stage 1 (``router``) reads the input topics as raw bytes, validates each message inside the agent
(a decode error in Faust's codec would kill the agent), dead-letters bad ones and repartitions
good ones by the key their state lives under, one envelope per shard partition per batch (see
``envelope``). Stage 2 (``detector``) reads that shard topic in batches, runs the engine and writes
each changed shard once per batch to the table's changelog.

Faust's own pitfalls are handled here: concurrency 1 per agent; no web server (``web_enabled`` off
and the worker is started without Faust's CLI, which would turn it back on); timers on every worker
(not leader-only), which only call the shell's synchronous ``sweep``; windowed state in the engine's
event-time buckets rather than Faust's wall-clock windows.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from orderwatch.agents import envelope, reload
from orderwatch.agents import store as local_store
from orderwatch.agents.faust_internals import (
    InputPause,
    PromptTableManager,
    TunedApp,
    aiokafka_producer,
    app_fetch_times,
    committed_offset,
    direct_delivery,
    shard_first,
    tune_fetcher,
)
from orderwatch.agents.membership import Membership
from orderwatch.agents.outbox import DeliveryFailed, Outbox
from orderwatch.agents.shell import WATERMARK_HEADER, Shell
from orderwatch.agents.telemetry import Telemetry
from orderwatch.engine.catalog import parse_duration
from orderwatch.engine.silence import SilenceMonitor
from orderwatch.heap import Releaser, release_memory
from orderwatch.http import start_http
from orderwatch.metrics import Metrics
from orderwatch.rulefiles import load_catalog
from orderwatch.settings import Settings

log = logging.getLogger("orderwatch.worker")

#: Key of the tombstone that closes each flush in a changelog partition (``Persistence``).
END_MARK = b"~end"
#: Exit status of a worker stopped by an error it could not contain (EX_SOFTWARE)
EXIT_CRASHED = 70
#: With watermark alignment (event time), records handed over per fetch and buffered per stream:
#: a pause stops what is fetched next, not what was handed over already, so these bound how far
#: a paused input overshoots (Faust's 1000 and 4096: up to ~3,000 events of one partition,
#: hours of a sparse stream's event time; at 250 and 1024 a few hundred). See ``Inputs.align``.
ALIGNED_POLL_RECORDS = 250
ALIGNED_STREAM_BUFFER = 1024
#: With watermark alignment, records an input partition may read past the clock before it is
#: paused (``Shell._past``): one fetch's worth, so that every input is fetched at once
ALIGN_LEAD = ALIGNED_POLL_RECORDS
#: With watermark alignment, records the inputs may read past a clock held by an input with
#: nothing left to read (``Shell.ahead``): what the lead keeps past it anyway (24 inputs x 250)
#: and the second such a hold lasts at this machine's ~14k events/s, so a backfill does not stop
#: for it (at 16,000 it still stopped ~0.9 s of 9); the peak of parked events does not grow with
#: the backlog (the alignment test: 16-20k at 82k events and at 165k)
HOLD_READ_AHEAD = 24_000


def crash(exc: BaseException, where: str) -> None:
    """Stop the process now, committing nothing: the one way an error may leave an agent.

    Why not let Faust handle it: an exception that leaves an agent body ends its
    ``stream.take_events`` generator, whose ``finally`` acks *every* event of the batch, the
    ones after the failing event included; Faust's supervisor restarts the agent and the next
    offset commit marks all of them read although nothing processed them (the issue-12 loss:
    14 exceptions never raised). A graceful stop is no better: Faust commits acked offsets on
    its way out. So the process ends here, before the next turn of the event loop, as if
    killed: the acks are never made and no commit follows. Input offsets stay at the last
    commit, whose state is on the changelog; the supervisor (k8s, compose, ``make demo``)
    restarts the worker, which reads the failing batch again: at least once, same ids.

    Reached from the agents' ``on_error`` (any exception an agent lets through, ours or
    Faust's), the sweep timer, the state flush before a commit and the rebalance hooks, and
    from the shell under ``ORDERWATCH_ON_PROCESSING_ERROR=fail``.
    """
    try:
        # the traceback's frames and the exception's class only: its message may quote input
        frames = "".join(traceback.format_tb(exc.__traceback__, limit=-30))
        log.critical(
            "crashed in %s: %s; exiting with status %d without committing\n%s",
            where,
            type(exc).__name__,
            EXIT_CRASHED,
            frames,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
    finally:
        os._exit(EXIT_CRASHED)


async def _agent_crashed(agent: Any, exc: BaseException) -> None:
    """``on_error`` of both agents: Faust awaits it before its supervisor would restart."""
    crash(exc, f"agent {getattr(agent, 'name', agent)}")


def _crash_on_error(
    where: str, fun: Callable[..., Awaitable[None]]
) -> Callable[..., Awaitable[None]]:
    """``fun`` with any exception ending the process (``crash``), for timers and hooks whose
    failure would otherwise be logged by Faust and skipped, or fail a commit half-way."""

    # wrapped: Faust reads the signature (through ``__wrapped__``) to decide what to pass
    @functools.wraps(fun)
    async def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            await fun(*args, **kwargs)
        except Exception as exc:
            crash(exc, where)

    return guarded


#: Faust internals used here and by others (the pipeline bench, tests), from their one module
__all__ = ["TunedApp", "Worker", "crash", "credentials", "direct_delivery", "shard_first"]


def credentials(settings: Settings) -> Any:
    """TLS / SASL credentials for Faust from settings (None for plaintext)."""
    protocol = settings.security_protocol
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH,
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
        )
        if settings.ssl_certfile:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            )
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        return faust.SASLCredentials(
            username=settings.sasl_username or "",
            password=password,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _stamp(event: Any) -> bytes | None:
    """The router's watermark header of a shard message (event-time mode), if any."""
    for name, value in event.message.headers or ():
        if name == WATERMARK_HEADER:
            return bytes(value)
    return None


class Worker:
    """Builds the Faust app around one ``Shell`` and tracks readiness."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.telemetry = Telemetry(
            self.metrics,
            wall_clock=settings.clock == "wall",
            lag_topics={
                settings.topic_orders,
                settings.topic_payments,
                settings.topic_inventory,
                settings.topic_logistics,
                settings.topic_blacklist,
                settings.topic_commands,
                settings.topic_action_results,
                f"{settings.app_id}-shard-events",
            },
        )
        self._ready = False
        self.catalog = load_catalog(settings.rules_dir)
        self.retention = parse_duration(settings.retention)
        self.app = self._make_app()
        self._wire()
        # a restart ends its killed incarnation's group membership before joining (membership.py)
        self.membership = Membership(
            Path(self.app.conf.tabledir), settings.app_id, local_store.consumer_options(settings)
        )
        self.membership.attach(self.app)

    @property
    def ready(self) -> bool:
        """Partitions assigned and the state table recovered: what ``/readyz`` reports."""
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value
        self.metrics.ready.set(1 if value else 0)

    def _make_app(self) -> faust.App:
        s = self.settings
        servers = [f"kafka://{h.strip()}" for h in s.bootstrap_servers.split(",") if h.strip()]
        app: faust.App = TunedApp(
            s.app_id,
            broker=servers,
            broker_credentials=credentials(s),
            store="orderwatch-rocksdb://" if s.store == "rocksdb" else "memory://",
            topic_partitions=s.partitions,
            topic_replication_factor=1,
            topic_allow_declare=True,
            web_enabled=False,
            web_bind="127.0.0.1",
            broker_session_timeout=s.session_timeout,
            broker_heartbeat_interval=s.heartbeat_interval,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=s.standby_replicas,
            producer_acks=-1,
            # an envelope (up to envelope.MAX_BYTES) and a batch's changelog writes fit one record
            # batch; Faust's 16 KiB default sent each envelope down the one-message path
            producer_max_batch_size=2 * envelope.MAX_BYTES,
            broker_max_poll_records=ALIGNED_POLL_RECORDS if s.aligned else 1000,
            **({"stream_buffer_maxsize": ALIGNED_STREAM_BUFFER} if s.aligned else {}),
            broker_commit_every=100_000,
            # each commit first writes every shard changed since the last (``Persistence``): a
            # busy shard (an open order, the shared rates and KPIs) is written once per commit,
            # so Faust's 2.8 s rewrote it several times as often as 10 s does, for a backlog's
            # worth of re-reading after a crash that is seconds either way (Kafka Streams: 30 s)
            broker_commit_interval=s.commit_interval,
            datadir=str(s.data_dir),
            stream_wait_empty=False,
            # Tansu answers ListOffsets with the start of a partition's last batch, not its end,
            # so Faust's check "our changelog offset <= the broker's end" fails on a healthy
            # rebalance and crashes recovery. Real Kafka answers correctly either way.
            recovery_consistency_check=False,
            # Faust's manager sleeps 1 s before the consumer may join (faust_internals)
            TableManager=PromptTableManager,
        )
        return app

    def _wire(self) -> None:
        """The topology, object by object (see the module docstring)."""
        s, app, t = self.settings, self.app, self.telemetry
        topology = Topology(app, s)
        self.table = topology.table
        outbox = self.outbox = Outbox(lambda: aiokafka_producer(app))
        writer = self.writer = (
            local_store.Writer(topology.table.data, topology.changelog_name, self.metrics)
            if s.store == "rocksdb"
            else None
        )
        if writer is not None:
            self.state_check = local_store.check_state_dir(
                Path(app.conf.tabledir), s.app_id, s.partitions, s.state_mismatch
            )
            app.catch_up_options = local_store.consumer_options(s)  # type: ignore[attr-defined]
        persistence = Persistence(topology, outbox, writer)
        self.shell = self._shell(topology, outbox, persistence)
        persistence.shell = self.shell
        inputs = Inputs(app, topology.source_names)

        app.on_agent_error = _agent_crashed  # type: ignore[attr-defined]
        router = Router(app, topology, self.shell, outbox, t, inputs, s)
        detector = Detector(app, topology, self.shell, outbox, s)
        # a state write that fails must not let the commit it precedes go through
        app.before_flush = _crash_on_error("state flush", persistence.persist)  # type: ignore[attr-defined]
        app.after_flush = persistence.delivered  # type: ignore[attr-defined]
        sweeper = Sweeper(app, self.shell, outbox, persistence, t, inputs, self.metrics, s)
        rebalancing = Rebalancing(self, topology, self.shell, persistence, t)
        app.task(self._serve_metrics)
        self._agents = (router, detector, sweeper, rebalancing)
        # hot reload of the rules directory (agents/reload.py): applied between batches
        self.reloader = reload.for_worker(self)
        app.task(self.reloader.run)

    def _shell(self, topology: Topology, outbox: Outbox, persistence: Persistence) -> Shell:
        s, t = self.settings, self.telemetry
        streams = {
            s.topic_orders: "orders",
            s.topic_payments: "payments",
            s.topic_logistics: "logistics",
            s.topic_inventory: "inventory",
        }
        shard_name = topology.shard_name

        def send_shard(
            key: bytes, value: bytes, partition: int | None, headers: Any = None
        ) -> None:
            outbox.put(shard_name, key, value, partition, headers)

        return Shell(
            # t.engine: an Engine that also counts its command replies by type and result
            lambda: t.engine(self.catalog, retention=self.retention, reorder=s.clock == "event"),
            s.partitions,
            clock=s.clock,
            silence=SilenceMonitor(dict(self.catalog), streams) if s.clock == "wall" else None,
            watermark_exempt={s.topic_blacklist},
            align_lead=ALIGN_LEAD if s.aligned else 0,
            hold_read_ahead=HOLD_READ_AHEAD if s.aligned else 0,
            send_shard=send_shard,
            # through the outbox like every other output: drained after each batch and tick and
            # before each commit. Faust's send_soon left a burst of dead letters from a sweep
            # (parked events failing when the clock reached them) unsent until the next commit,
            # which only new input brings, so a kill could lose them after their input was read
            send_dlq=lambda value, headers: outbox.put(s.topic_dlq, None, value, None, headers),
            send_exception=lambda key, value, headers: outbox.put(
                s.topic_exceptions, key, value, None, headers
            ),
            send_changelog=persistence.send_changelog,
            source=f"/orderwatch/{s.app_id}",
            on_invalid=t.on_invalid,
            on_event=t.on_event,
            on_exception=t.on_exception,
            on_error=s.on_processing_error,
            on_internal_error=t.on_internal_error,
            shard_topic=shard_name,
            send_reply=lambda key, value: outbox.put(s.topic_command_results, key, value),
            send_action=lambda key, value: outbox.put(s.topic_actions, key, value),
            on_action=lambda a: self.metrics.action_events.labels(a.type, a.status).inc(),
            on_paused=self.metrics.set_paused,
            send_kpi=lambda key, value: outbox.put(s.topic_kpis, key, value),
            on_kpi=self.metrics.count_kpi,
            send_blacklist=lambda key, value: outbox.put(s.topic_blacklist, key, value),
        )

    async def _serve_metrics(self) -> None:
        s = self.settings
        if s.metrics_port:
            self._http = await start_http(
                s.metrics_host, s.metrics_port, self.metrics, lambda: self.ready
            )


class Topology:
    """What the worker reads, writes and keeps: the input topics (raw bytes: a decode error in
    Faust's codec would kill the agent), the internal shard topic, the dead-letter topic and the
    state table, whose changelog the shell writes."""

    def __init__(self, app: faust.App, s: Settings) -> None:
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        self.source_names = {
            s.topic_orders,
            s.topic_payments,
            s.topic_inventory,
            s.topic_logistics,
            s.topic_blacklist,
            s.topic_commands,
            s.topic_action_results,
        }
        # from ``source_names``: the router reads exactly the topics ``Inputs`` (the event-time
        # watermark) counts as inputs; a topic in one and not the other goes unread
        self.sources = app.topic(*sorted(self.source_names), **raw)
        self.shard_topic = app.topic(
            f"{s.app_id}-shard-events", partitions=s.partitions, internal=True, **raw
        )
        self.shard_name: str = self.shard_topic.get_topic_name()
        self.dlq = app.topic(s.topic_dlq, **raw)
        self.table = app.Table(
            "state",
            partitions=s.partitions,
            default=None,
            # bytes -> Faust's "raw" serializer on write *and* in recovery (a schema alone
            # is not used by recovery, which would then try to decode our keys as JSON)
            key_type=bytes,
            value_type=bytes,
            **(
                {
                    "options": local_store.rocksdb_options(
                        s.rocksdb_block_cache_mb, s.rocksdb_write_buffer_mb
                    )
                }
                if s.store == "rocksdb"
                else {}
            ),
        )
        self.changelog_name: str = self.table.changelog_topic.get_topic_name()


class Persistence:
    """The shell's changed shards to the changelog, right before Faust commits input offsets.

    Each changelog partition written to ends with a record batch of its own holding one
    tombstone (``END_MARK``). Tansu answers ListOffsets with the *start* of a partition's last
    record batch, and Faust's recovery reads only up to that offset: the shards of the last
    batch, all of one flush, were invisible to the next owner (the rebalance test caught a
    worker that recovered 0 shards of two partitions). With the mark last, only the mark is
    unseen. On Kafka it costs one small record per partition per commit.
    """

    def __init__(
        self, topology: Topology, outbox: Outbox, writer: local_store.Writer | None = None
    ) -> None:
        self.table = topology.table
        #: the RocksDB store's writer (``agents/store.py``), or None for the memory store
        self.writer = writer
        self.changelog_name = topology.changelog_name
        self.outbox = outbox
        self.shell: Shell | None = None
        #: changelog partitions written since the last end mark
        self.unmarked: set[int] = set()
        self.flushed = time.monotonic()

    def send_changelog(self, partition: int, key: bytes, value: bytes | None) -> None:
        """The shell's ``send_changelog``: the table's data and its changelog, together."""
        if self.writer is not None:
            self.writer.write(partition, key, value)
        elif value is None:
            self.table.data.pop(key, None)
        else:
            self.table.data[key] = value
        self.outbox.put(self.changelog_name, key, value, partition)
        self.unmarked.add(partition)

    async def persist(self) -> None:
        """Changed shards to the changelog, then everything pending to the producer; first, no
        record batch sent before may have failed (``Outbox.check``)."""
        assert self.shell is not None
        self.outbox.check()
        self.shell.persist()
        if self.writer is not None:
            self.writer.flush()  # the flush's shards and timer index: one write batch each
        self.flushed = time.monotonic()
        await self.outbox.drain()
        if self.unmarked:
            marked = sorted(self.unmarked)
            for partition in marked:
                self.outbox.put(self.changelog_name, END_MARK, None, partition)
            self.unmarked.clear()
            await self.outbox.drain()  # a drain of its own: a record batch of its own
            if self.writer is not None:
                # the store records how far the changelog holds what it wrote
                for partition in marked:
                    sent = self.outbox.last_sent.get((self.changelog_name, partition))
                    if sent is not None:
                        self.writer.sent(partition, sent)

    def delivered(self) -> None:
        """After the producer's flush, before Faust commits input offsets: every batch is done,
        and none may have failed (``Outbox.check``: the worker ends, committing nothing); then
        the store records its changelog offsets."""
        try:
            self.outbox.check()
        except DeliveryFailed as exc:
            crash(exc, "state flush")
        if self.writer is not None:
            self.writer.commit_offsets()


class Inputs:
    """The router's view of its input partitions: which it reads, how far they go, where it
    stands in each (the event-time watermark, ``Shell.look``)."""

    def __init__(self, app: faust.App, source_names: set[str]) -> None:
        self.app = app
        self.source_names = source_names
        self.pause = InputPause(app)
        self._fetched = app_fetch_times(app)

    def align(self, shell: Shell, drift: float) -> int:
        """Pause the input partitions read too far ahead of the others, resume the rest
        (``Shell.ahead``); returns how many are paused. After each routed batch and each tick:
        a router whose unpaused inputs have nothing left gets no batch to resume the others."""
        paused: int = self.pause.apply(shell.ahead(drift))
        return paused

    def assigned(self) -> list[tuple[str, int]]:
        return [
            (tp.topic, tp.partition)
            for tp in self.app.consumer.assignment()
            if tp.topic in self.source_names
        ]

    def every_partition(self) -> list[tuple[str, int]] | None:
        """Every partition of the input topics, from the consumer's metadata."""
        inputs: list[tuple[str, int]] = []
        for topic in self.source_names:
            count = self.app.consumer.topic_partitions(topic)
            if count is None:
                return None
            inputs.extend((topic, p) for p in range(count))
        return inputs

    def highwater(self, topic: str, partition: int) -> int | None:
        try:
            value = self.app.consumer.highwater(TP(topic, partition))
        except Exception:  # not fetched yet
            return None
        return int(value) if value is not None else None

    def position(self, topic: str, partition: int) -> int | None:
        offset: int | None = committed_offset(self.app, topic, partition)
        return offset

    def fetched(self, topic: str, partition: int) -> float | None:
        """When the consumer last had a fetch response for the partition (``Shell.watermark``
        measures idleness by it)."""
        at: float | None = self._fetched(topic, partition)
        return at


class Router:
    """Stage 1, an agent on the input topics: validate, dead-letter, repartition by shard key
    into one envelope per shard partition per batch."""

    def __init__(
        self,
        app: faust.App,
        topology: Topology,
        shell: Shell,
        outbox: Outbox,
        telemetry: Telemetry,
        inputs: Inputs,
        s: Settings,
    ) -> None:
        event_time = s.clock == "event"
        align = s.aligned

        async def router(stream: Any) -> None:
            async for batch in stream.take_events(s.batch_max, within=s.batch_within):
                if event_time:
                    shell.look(inputs.assigned(), inputs.highwater, inputs.position, inputs.fetched)
                for event in batch:
                    msg = event.message
                    shell.route(event.value, msg.topic, msg.partition, msg.offset)
                shell.flush()
                if align:
                    inputs.align(shell, s.align_drift)
                telemetry.flush()
                await outbox.drain()

        self.agent = app.agent(topology.sources, concurrency=1)(router)


class Detector:
    """Stage 2, an agent on the shard topic: run each envelope's events through the engines."""

    def __init__(
        self, app: faust.App, topology: Topology, shell: Shell, outbox: Outbox, s: Settings
    ) -> None:
        # one detector batch holds about one router batch of events: an envelope carries up to
        # a router batch for its partition, and the detector runs a batch without yielding the
        # loop (500 envelopes at once held the loop for over a second: timers, heartbeats and
        # the router all waited)
        envelopes = max(1, min(4 * s.partitions, s.batch_max))

        async def detector(stream: Any) -> None:
            async for batch in stream.take_events(envelopes, within=s.batch_within):
                shell.process(
                    (e.key, e.value, e.message.partition, e.message.timestamp, _stamp(e))
                    for e in batch
                )
                await outbox.drain()

        self.agent = app.agent(topology.shard_topic, concurrency=1)(detector)


class Sweeper:
    """The timer on every worker (not leader-only): watermark reports, due deadlines, state
    written while the inputs are quiet, gauges."""

    def __init__(
        self,
        app: faust.App,
        shell: Shell,
        outbox: Outbox,
        persistence: Persistence,
        telemetry: Telemetry,
        inputs: Inputs,
        metrics: Metrics,
        s: Settings,
    ) -> None:
        event_time = s.clock == "event"
        releaser = Releaser(time.monotonic())
        writer = persistence.writer

        async def sweep() -> None:
            with metrics.sweep_duration.time():
                if event_time:
                    shell.send_watermarks(
                        inputs.assigned(),
                        inputs.highwater,
                        inputs.every_partition(),
                        inputs.position,
                        inputs.fetched,
                    )
                    if s.aligned:
                        metrics.inputs_paused.set(inputs.align(shell, s.align_drift))
                    metrics.parked_events.set(shell.parked)
                shell.sweep()
            if time.monotonic() - persistence.flushed >= app.conf.broker_commit_interval:
                # Faust commits (and so flushes) only after reading something: what timeouts
                # changed while the inputs are quiet is written here
                await persistence.persist()
            await outbox.drain()
            telemetry.refresh(shell.engines.values(), app.consumer)
            telemetry.silence(shell.silence)
            telemetry.stages(shell.counters.queued, shell.counters.processed, shell.counters.copies)
            if writer is not None:
                writer.report(shell.engines)
            if releaser.due(shell.counters.processed, time.monotonic()):
                release_memory()  # once a minute, and as soon as a backlog is read

        self.timer = app.timer(s.sweep_interval, on_leader=False)(_crash_on_error("sweep", sweep))


class Rebalancing:
    """Recovery and revocation: engines rebuilt from the recovered table, changed state written
    before partitions go, readiness for ``/readyz``."""

    def __init__(
        self,
        worker: Worker,
        topology: Topology,
        shell: Shell,
        persistence: Persistence,
        telemetry: Telemetry,
    ) -> None:
        app, s = worker.app, worker.settings

        async def recovered() -> None:
            tune_fetcher(app, s.fetch_max_wait, topology.shard_name)
            owned = {
                tp.partition for tp in app.consumer.assignment() if tp.topic == topology.shard_name
            }
            persistence.outbox.check()  # before any position is written (Outbox.check)
            shell.persist()  # into the table first: the engines are rebuilt from it
            writer = persistence.writer
            if writer is not None:
                writer.flush()  # what persist wrote, before the store is read
            if writer is None:
                loaded = shell.restore(list(topology.table.data.items()), owned)
            else:
                loaded = local_store.restore(
                    shell, writer, owned, s.shard_cache, app.conf.tabledir, s.shard_cache_mb << 20
                )
            worker.ready = True
            worker.metrics.rebalances.inc()
            log.info("state recovered: %d shards, partitions %s", loaded, sorted(owned))

        async def revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
            telemetry.on_revoked((tp.topic, tp.partition) for tp in revoked)
            gone = {tp.partition for tp in revoked if tp.topic == topology.shard_name}
            if gone:
                persistence.outbox.check()  # before any position is written (Outbox.check)
                shell.revoke(gone)
                await persistence.persist()
            worker.ready = False

        self.recovered = _crash_on_error("state recovery", recovered)
        self.revoked = _crash_on_error("revocation", revoked)
        topology.table.on_recover(self.recovered)
        app.on_partitions_revoked.connect(self.revoked)
