"""The Faust application: topics, the state table, two agents and the sweep timer.

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

import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.sensors import Sensor
from faust.types import TP
from mode.services import WaitResults

from orderwatch.agents import envelope
from orderwatch.agents.outbox import Outbox
from orderwatch.agents.shell import WATERMARK_HEADER, Shell
from orderwatch.agents.telemetry import Telemetry
from orderwatch.engine import Engine
from orderwatch.engine.catalog import parse_duration
from orderwatch.engine.silence import SilenceMonitor
from orderwatch.http import start_http
from orderwatch.metrics import Metrics
from orderwatch.rulefiles import load_catalog
from orderwatch.settings import Settings

log = logging.getLogger("orderwatch.worker")

#: Key of the tombstone that closes each flush in a changelog partition (see ``persist``).
END_MARK = b"~end"


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


def shard_first(fetcher: Any, topic: str) -> Any:
    """``fetcher.fetched_records`` serving ``topic``'s buffered records before any other's."""
    original = fetcher.fetched_records
    buffered = fetcher._records  # an OrderedDict: topic-partition -> records, served in order

    async def fetched_records(*args: Any, **kwargs: Any) -> Any:
        for tp in [tp for tp in buffered if tp.topic == topic]:
            buffered.move_to_end(tp, last=False)
        return await original(*args, **kwargs)

    return fetched_records


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


def _stamp(event: Any) -> bytes | None:
    """The router's watermark header of a shard message (event-time mode), if any."""
    for name, value in event.message.headers or ():
        if name == WATERMARK_HEADER:
            return bytes(value)
    return None


class TunedApp(faust.App):
    """Faust's app with the worker's runtime changes (the pipeline bench runs a bare agent on it
    too, to show what they move on their own).

    - No ``Monitor`` sensor: it keeps per-event statistics for Faust's web ``/stats`` page, which
      this worker never serves (our metrics are Prometheus, from ``telemetry``), yet it ran on
      every event of every stream. Faust's direct calls into ``app.monitor`` (commit and
      end-offset tracking) still work: only the per-event sensor hooks are gone.
    - ``direct_delivery`` in the consumer's fetch loop.
    - ``before_flush``, awaited before each flush of the producer.
    """

    #: awaited before every flush of Faust's producer, which Faust does right before it commits
    #: input offsets (and when it stops): the worker writes its changed state there
    before_flush: Callable[[], Awaitable[None]] | None = None

    def _new_producer(self) -> Any:
        producer = super()._new_producer()
        flush = producer.flush

        async def flush_state_first() -> None:
            if self.before_flush is not None:
                await self.before_flush()
            await flush()

        producer.flush = flush_state_first  # type: ignore[method-assign]
        return producer

    def _new_consumer(self) -> Any:
        consumer: Any = super()._new_consumer()
        consumer.wait_first = direct_delivery(consumer)
        return consumer

    def on_init_dependencies(self) -> Any:
        dependencies = super().on_init_dependencies()
        with contextlib.suppress(KeyError):
            self.sensors.remove(self.monitor)
        # a sensor whose hooks do nothing: Faust warns about every rebalance without any sensor
        self.sensors.add(Sensor())
        return dependencies


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
        return TunedApp(
            s.app_id,
            broker=servers,
            broker_credentials=credentials(s),
            store="memory://",
            topic_partitions=s.partitions,
            topic_replication_factor=1,
            topic_allow_declare=True,
            web_enabled=False,
            web_bind="127.0.0.1",
            broker_session_timeout=s.session_timeout,
            broker_heartbeat_interval=s.heartbeat_interval,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=0,
            producer_acks=-1,
            # an envelope (up to envelope.MAX_BYTES) and a batch's changelog writes fit one record
            # batch; Faust's 16 KiB default sent each envelope down the one-message path
            producer_max_batch_size=2 * envelope.MAX_BYTES,
            broker_max_poll_records=1000,
            broker_commit_every=100_000,
            datadir=str(s.data_dir),
            stream_wait_empty=False,
            # Tansu answers ListOffsets with the start of a partition's last batch, not its end,
            # so Faust's check "our changelog offset <= the broker's end" fails on a healthy
            # rebalance and crashes recovery. Real Kafka answers correctly either way.
            recovery_consistency_check=False,
        )

    def _wire(self) -> None:
        s, app = self.settings, self.app
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        sources = app.topic(
            s.topic_orders,
            s.topic_payments,
            s.topic_inventory,
            s.topic_logistics,
            s.topic_blacklist,
            s.topic_commands,
            s.topic_action_results,
            **raw,
        )
        shard_topic = app.topic(
            f"{s.app_id}-shard-events", partitions=s.partitions, internal=True, **raw
        )
        dlq = app.topic(s.topic_dlq, **raw)
        table = app.Table(
            "state",
            partitions=s.partitions,
            default=None,
            # bytes -> Faust's "raw" serializer on write *and* in recovery (a schema alone
            # is not used by recovery, which would then try to decode our keys as JSON)
            key_type=bytes,
            value_type=bytes,
        )
        self.table = table
        t = self.telemetry

        # Faust's own aiokafka producer: the one it flushes before committing offsets
        outbox = self.outbox = Outbox(lambda: app.producer._ensure_producer())  # type: ignore[attr-defined]
        shard_name = shard_topic.get_topic_name()
        changelog_name = table.changelog_topic.get_topic_name()

        def send_shard(
            key: bytes, value: bytes, partition: int | None, headers: Any = None
        ) -> None:
            outbox.put(shard_name, key, value, partition, headers)

        unmarked: set[int] = set()

        def send_changelog(partition: int, key: bytes, value: bytes | None) -> None:
            if value is None:
                table.data.pop(key, None)
            else:
                table.data[key] = value
            outbox.put(changelog_name, key, value, partition)
            unmarked.add(partition)

        streams = {
            s.topic_orders: "orders",
            s.topic_payments: "payments",
            s.topic_logistics: "logistics",
            s.topic_inventory: "inventory",
        }
        self.shell = Shell(
            lambda: Engine(self.catalog, retention=self.retention, reorder=s.clock == "event"),
            s.partitions,
            clock=s.clock,
            silence=SilenceMonitor(dict(self.catalog), streams) if s.clock == "wall" else None,
            watermark_exempt={s.topic_blacklist},
            send_shard=send_shard,
            send_dlq=lambda value, headers: dlq.send_soon(value=value, headers=headers),
            send_exception=lambda key, value, headers: outbox.put(
                s.topic_exceptions, key, value, None, headers
            ),
            send_changelog=send_changelog,
            source=f"/orderwatch/{s.app_id}",
            on_invalid=t.on_invalid,
            on_event=t.on_event,
            on_exception=t.on_exception,
            send_reply=lambda key, value: outbox.put(s.topic_command_results, key, value),
            send_action=lambda key, value: outbox.put(s.topic_actions, key, value),
            on_action=lambda a: self.metrics.action_events.labels(a.type, a.status).inc(),
            on_paused=self.metrics.set_paused,
            send_kpi=lambda key, value: outbox.put(s.topic_kpis, key, value),
            on_kpi=self.metrics.count_kpi,
        )
        shell = self.shell

        source_topics = {
            s.topic_orders,
            s.topic_payments,
            s.topic_inventory,
            s.topic_logistics,
            s.topic_blacklist,
            s.topic_commands,
            s.topic_action_results,
        }

        def source_partitions() -> list[tuple[str, int]]:
            return [
                (tp.topic, tp.partition)
                for tp in app.consumer.assignment()
                if tp.topic in source_topics
            ]

        def all_inputs() -> list[tuple[str, int]] | None:
            """Every partition of the input topics, from the consumer's metadata."""
            inputs: list[tuple[str, int]] = []
            for topic in source_topics:
                count = app.consumer.topic_partitions(topic)
                if count is None:
                    return None
                inputs.extend((topic, p) for p in range(count))
            return inputs

        def highwater(topic: str, partition: int) -> int | None:
            try:
                value = app.consumer.highwater(TP(topic, partition))
            except Exception:  # not fetched yet
                return None
            return int(value) if value is not None else None

        def position(topic: str, partition: int) -> int | None:
            """Faust's read offset: the committed offset after a seek, then the last read."""
            try:
                value = app.consumer._read_offset.get(TP(topic, partition))  # type: ignore[attr-defined]
            except Exception:  # a later Faust without it: the watermark waits for a first read
                return None
            return int(value) if value is not None else None

        @app.agent(sources, concurrency=1)
        async def router(stream: Any) -> None:
            async for batch in stream.take_events(s.batch_max, within=s.batch_within):
                if s.clock == "event":
                    shell.look(source_partitions(), highwater, position)
                for event in batch:
                    msg = event.message
                    shell.route(event.value, msg.topic, msg.partition, msg.offset)
                shell.flush()
                t.flush()
                await outbox.drain()

        # one detector batch holds about one router batch of events: an envelope carries up to
        # a router batch for its partition, and the detector runs a batch without yielding the
        # loop (500 envelopes at once held the loop for over a second: timers, heartbeats and
        # the router all waited)
        envelopes = max(1, min(4 * s.partitions, s.batch_max))

        @app.agent(shard_topic, concurrency=1)
        async def detector(stream: Any) -> None:
            async for batch in stream.take_events(envelopes, within=s.batch_within):
                shell.process(
                    (e.key, e.value, e.message.partition, e.message.timestamp, _stamp(e))
                    for e in batch
                )
                await outbox.drain()

        flushed = [time.monotonic()]

        async def persist() -> None:
            """Changed shards to the changelog, then everything pending to the producer.

            Each changelog partition written to ends with a record batch of its own holding one
            tombstone (``END_MARK``). Tansu answers ListOffsets with the *start* of a
            partition's last record batch, and Faust's recovery reads only up to that offset:
            the shards of the last batch, all of one flush, were invisible to the next owner
            (the rebalance test caught a worker that recovered 0 shards of two partitions). With
            the mark last, only the mark is unseen. On Kafka it costs one small record per
            partition per commit.
            """
            shell.persist()
            flushed[0] = time.monotonic()
            await outbox.drain()
            if unmarked:
                for partition in sorted(unmarked):
                    outbox.put(changelog_name, END_MARK, None, partition)
                unmarked.clear()
                await outbox.drain()  # a drain of its own: a record batch of its own

        app.before_flush = persist  # type: ignore[attr-defined]

        async def sweep() -> None:
            with self.metrics.sweep_duration.time():
                if s.clock == "event":
                    shell.send_watermarks(source_partitions(), highwater, all_inputs(), position)
                shell.sweep()
            if time.monotonic() - flushed[0] >= app.conf.broker_commit_interval:
                # Faust commits (and so flushes) only after reading something: what timeouts
                # changed while the inputs are quiet is written here
                await persist()
            await outbox.drain()
            t.refresh(shell.engines.values(), app.consumer)
            t.silence(shell.silence)
            t.stages(shell.counters.queued, shell.counters.processed)

        app.timer(s.sweep_interval, on_leader=False)(sweep)

        def tune_fetcher() -> None:
            """Two changes to the consumer's fetcher, both on aiokafka internals.

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
                fetcher._fetch_max_wait_ms = int(s.fetch_max_wait * 1000)
                if not getattr(fetcher, "_orderwatch_shard_first", False):
                    fetcher.fetched_records = shard_first(fetcher, shard_name)
                    fetcher._orderwatch_shard_first = True
            except Exception:  # a later Faust or aiokafka without these internals: keep theirs
                log.warning("could not tune the consumer's fetcher")

        @table.on_recover
        async def recovered() -> None:
            tune_fetcher()
            owned = {
                tp.partition
                for tp in app.consumer.assignment()
                if tp.topic == shard_topic.get_topic_name()
            }
            loaded = shell.restore(list(table.data.items()), owned)
            self.ready = True
            self.metrics.rebalances.inc()
            log.info("state recovered: %d shards, partitions %s", loaded, sorted(owned))

        async def revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
            t.on_revoked((tp.topic, tp.partition) for tp in revoked)
            name = shard_topic.get_topic_name()
            gone = {tp.partition for tp in revoked if tp.topic == name}
            if gone:
                shell.revoke(gone)
                await persist()
            self.ready = False

        app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]

        async def serve_metrics() -> None:
            if s.metrics_port:
                self._http = await start_http(
                    s.metrics_host, s.metrics_port, self.metrics, lambda: self.ready
                )

        app.task(serve_metrics)
        self._agents = (router, detector, sweep, recovered, revoked, serve_metrics)
