"""Throughput and detection latency of the whole pipeline on one embedded Tansu broker.

Why three consumers over the same messages: the worker's throughput alone says nothing about
where the time goes. A raw aiokafka consumer that only decodes is the ceiling of the client and
the codec; a bare Faust agent that only decodes is the ceiling of Faust; the worker on top adds
routing, the shard topic, the engine and the changelog. Their ratio is our own overhead.

    .venv/bin/python bench/bench_pipeline.py [--events 200000] [--latency-seconds 30]

200k events by default, the issue's size (``make bench`` passes ``--events 100000`` to keep
its whole run near three minutes).

Steps (every figure printed, none asserted):
  1. one simulated day (healthy orders + 3 % anomalies), the first ``--events`` of it, produced
     once to the five input topics (4 partitions each);
  2. events/s, first to last event consumed, of (a) aiokafka + ``decode_event``, (b) a bare Faust
     agent that decodes (a child process, web off), (b') the same on the worker's ``TunedApp``
     (no Monitor sensor, ``direct_delivery``) with its collector thresholds (``heap``),
     (c) ``orderwatch worker`` (a child process; its ``orderwatch_events_consumed_total``
     scraped from /metrics) on the event-time clock, the mode for a recorded day, then how long
     its detector takes to finish (end to end);
  3. a second worker, on the wall clock (the default) and fresh topics, under
     ``--latency-seconds`` of demo traffic paced at ``--rate``:
     timeouts backdated so their deadline passes 5 s after sending (deadline -> exception on the
     topic), and invalid-address / abnormal-quantity orders (order sent -> exception on the topic);
     p50 / p99 of arrival on the exceptions topic minus the exception's ``event_time``;
  4. with ``--restart-orders N``: restart-to-ready of a worker with N orders in its changelog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orderwatch.broker import EmbeddedBroker
from orderwatch.errors import EventValidationError
from orderwatch.events.codec import decode_event
from orderwatch.simulation.traffic import AGO, TOPICS, SimConfig, Simulator, topic_and_key

# the worker subprocess helper of the integration tests, reused rather than copied
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.harness import Topics, WorkerProcess

#: A simulated day yields about this many events per healthy order (snapshots included).
EVENTS_PER_ORDER = 31
TIMEOUT_RULES = ("payment.paid_not_updated",)
EVENT_RULES = ("customer.invalid_address", "fraud.abnormal_quantity")
FAUST_CHILD = "--faust-child"


# --- traffic -------------------------------------------------------------------------------


def day_of_events(count: int, topics: Topics, seed: int = 1) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of the first ``count`` events of a simulated day sized to hold them."""
    orders = max(10, round(count / EVENTS_PER_ORDER) + 1)
    sim = Simulator(SimConfig(seed=seed, orders=orders, anomaly_rate=0.03))
    names = {stream: topics.name(base) for stream, base in TOPICS.items()}
    out = []
    for event in itertools.islice(sim.events(), count):
        topic, key = topic_and_key(event, names)
        out.append((topic, key.encode(), orjson.dumps(event)))
    return out


async def send_all(bootstrap: str, records: Iterable[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def stamp_now(event: dict[str, Any]) -> bytes:
    """Date an event at the wall clock (minus its demo backdating) and serialize it.

    Unlike ``make demo``, every event is re-dated, not only the backdated ones, so an order's
    ``occurred_at`` is the moment it was sent and ``event_time`` of its exception measures from
    there. Nothing else times out: the simulator's healthy steps are minutes to days apart.
    """
    ago = event.pop(AGO, 0.0)
    at = datetime.fromtimestamp(time.time() - ago, UTC)
    event["occurred_at"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps(event)


# --- measurements --------------------------------------------------------------------------


@dataclass
class Span:
    """First and last time something was consumed, and how many were."""

    events: int = 0
    first: float | None = None
    last: float | None = None
    complete: bool = True
    #: CPU seconds of the consuming process (all threads) from its first event to its last: the
    #: figure the rate follows on two shared cores, and far steadier than the rate under load
    cpu: float = 0.0

    def see(self, n: int, received: float, done: float) -> None:
        """``n`` events arrived at ``received`` and were handled by ``done``."""
        if n and self.first is None:
            self.first = received
        self.events += n
        self.last = done

    @property
    def rate(self) -> float:
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return self.events / (self.last - self.first)


async def raw_consume(bootstrap: str, topics: list[str], expect: int, within: float) -> Span:
    """(a) aiokafka, no group, decode every value: the ceiling of client + codec."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    span, deadline = Span(), time.monotonic() + within
    try:
        while span.events < expect:
            if time.monotonic() > deadline:
                span.complete = False
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            received, n = time.monotonic(), 0
            for records in batch.values():
                for record in records:
                    with contextlib.suppress(EventValidationError):
                        decode_event(record.value)
                    n += 1
            span.see(n, received, time.monotonic())
    finally:
        await consumer.stop()
    return span


def faust_child(bootstrap: str, topics: list[str], expect: int, out: Path, direct: bool) -> None:
    """(b) the bare Faust app, run in a child process: decode in batches like the router.

    ``direct``: on the worker's own ``TunedApp`` (no Monitor sensor, ``direct_delivery`` in
    Faust's fetch loop) with the worker's collector thresholds, so the bench shows how much of
    the worker's rate comes from Faust's floor moving.
    """
    import faust

    from orderwatch.agents.app import TunedApp
    from orderwatch.heap import tune_collector

    if direct:
        tune_collector()
    app_class: type[faust.App] = TunedApp if direct else faust.App
    app = app_class(
        f"bench-faust-{out.stem}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        datadir=str(out.parent / f"{out.stem}-data"),
    )
    source = app.topic(*topics, key_serializer="raw", value_serializer="raw")
    span = Span()
    cpu_first: list[float] = []

    @app.agent(source, concurrency=1)
    async def decode(stream: Any) -> None:
        async for batch in stream.take_events(500, within=0.05):
            received = time.monotonic()
            if not cpu_first:
                cpu_first.append(time.process_time())
            for event in batch:
                with contextlib.suppress(EventValidationError):
                    decode_event(event.value)
            span.see(len(batch), received, time.monotonic())
            if span.events >= expect and span.complete:
                span.complete = False  # report once
                span.cpu = time.process_time() - cpu_first[0]
                write_result(out, span)

    faust.Worker(app, loglevel="warning").execute_from_commandline()


def write_result(out: Path, span: Span) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"events": span.events, "seconds": span_s(span), "cpu": span.cpu}))
    tmp.rename(out)


def span_s(span: Span) -> float:
    return (span.last or 0.0) - (span.first or 0.0)


def run_faust(
    bootstrap: str,
    topics: list[str],
    expect: int,
    workdir: Path,
    within: float,
    direct: bool = False,
) -> Span:
    out = workdir / f"faust-{os.getpid()}-{int(direct)}.json"
    cmd = [
        sys.executable,
        __file__,
        FAUST_CHILD,
        bootstrap,
        ",".join(topics),
        str(expect),
        out,
        "direct" if direct else "stock",
    ]
    log = open(workdir / "faust.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + within
    try:
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop_group(proc)
    if not out.exists():
        tail = (workdir / "faust.log").read_text(errors="replace")[-2000:]
        print(f"  bare Faust did not finish in {within:.0f} s; its log ends:\n{tail}")
        return Span(complete=False)
    result = orjson.loads(out.read_bytes())
    return Span(result["events"], 0.0, result["seconds"], cpu=result.get("cpu", 0.0))


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def metric_sum(worker: WorkerProcess, name: str, **labels: str) -> float:
    """Sum of every sample of one metric (with these labels) on the worker's /metrics (0.0 when
    absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    # that family alone (``name[]``): a full render and parse, 4 times a second, cost the worker
    # (and this process, on the same two cores) time the bare agents do not spend
    status, body = worker.get(f"/metrics?name[]={name}")
    if status != 200:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == name and (not labels or labels.items() <= sample.labels.items())
    )


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) a live process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_consume(worker: WorkerProcess, expect: int, within: float) -> Span:
    """(c) poll ``orderwatch_events_consumed_total`` until it reaches ``expect``; ``cpu`` counts
    from the first poll that saw an event (the caller adds what its detector takes after)."""
    span, seen, deadline = Span(), 0.0, time.monotonic() + within
    pid = worker.proc.pid if worker.proc is not None else 0
    while seen < expect:
        if time.monotonic() > deadline or not worker.alive():
            span.complete = False
            break
        now_seen = metric_sum(worker, "orderwatch_events_consumed_total")
        if now_seen < seen:  # a scrape that failed (0.0): the count never goes down
            time.sleep(0.25)
            continue
        if now_seen and span.first is None:
            span.cpu = -process_cpu(pid)
        now = time.monotonic()
        span.see(int(now_seen - seen), now, now)
        seen = now_seen
        time.sleep(0.25)  # each scrape costs the worker time the bare agents do not spend
    return span


async def shard_backlog(bootstrap: str, worker: WorkerProcess) -> int:
    """Shard messages the detector has not committed yet (end offsets - committed offsets)."""
    group = worker.env["ORDERWATCH_APP_ID"]
    topic = f"{group}-shard-events"
    # never subscribes, so it never joins the group: it only reads the group's offsets
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            return -1
        ends = await consumer.end_offsets(parts)
        backlog = 0
        for tp, end in ends.items():
            backlog += max(0, end - (await consumer.committed(tp) or 0))
        return backlog
    finally:
        await consumer.stop()


def wait_drained(bootstrap: str, worker: WorkerProcess, within: float) -> float | None:
    """Seconds until the detector has committed every shard message (Faust commits every ~3 s).

    Not ``orderwatch_consumer_lag_messages``: on this worker that gauge stays above 0 long after
    every input was read (see docs/benchmarks.md).
    """
    started = time.monotonic()
    while time.monotonic() - started < within:
        if asyncio.run(shard_backlog(bootstrap, worker)) == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def settled(worker: WorkerProcess, name: str, quiet: float = 3.0, within: float = 30.0) -> float:
    """A metric once it has not moved for ``quiet`` seconds: on the event-time clock the day's last
    timeouts fire only after every input has been caught up for a second."""
    value, since, deadline = metric_sum(worker, name), time.monotonic(), time.monotonic() + within
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.2)
        now_value = metric_sum(worker, name)
        if now_value != value:
            value, since = now_value, time.monotonic()
    return value


def wait_applied(worker: WorkerProcess, within: float) -> float | None:
    """Seconds until stage 2 has applied every event copy stage 1 routed (read from /metrics,
    which the worker brings up to date each timer tick, 0.5 s)."""
    name = "orderwatch_shard_items_total"
    started = time.monotonic()
    while time.monotonic() - started < within:
        routed = metric_sum(worker, name, stage="routed")
        if routed and metric_sum(worker, name, stage="applied") >= routed:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


# --- latency -------------------------------------------------------------------------------


@dataclass
class Latencies:
    timeout: list[float]
    event: list[float]
    sent: int
    seconds: float


async def paced_traffic(
    bootstrap: str, topics: Topics, rate: float, seconds: float
) -> tuple[int, set[tuple[str, str]]]:
    """Demo traffic at ``rate`` events/s for ``seconds``; returns (sent, expected exceptions)."""
    names = {stream: topics.name(base) for stream, base in TOPICS.items()}
    mix = dict.fromkeys(TIMEOUT_RULES + EVENT_RULES, 1.0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    expected: set[tuple[str, str]] = set()
    sent, t0 = 0, time.monotonic()
    try:
        for seed in itertools.count(101):
            sim = Simulator(SimConfig(seed=seed, orders=400, demo=True, anomaly_rate=0.25, mix=mix))
            expected.update((e.rule_id, e.subject) for e in sim.expected)
            for event in sim.events():
                due = t0 + sent / rate
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                if time.monotonic() - t0 >= seconds:
                    return sent, expected
                topic, key = topic_and_key(event, names)
                await producer.send(topic, stamp_now(event), key=key.encode())
                sent += 1
    finally:
        await producer.flush()
        await producer.stop()
    raise AssertionError("unreachable")


async def measure_latency(
    bootstrap: str, topics: Topics, rate: float, seconds: float, settle: float
) -> Latencies:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        # the measuring instrument must not add to what it measures: aiokafka's default lets a
        # broker hold a fetch 500 ms, and Tansu holds it that long on a quiet partition
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    parts = consumer.partitions_for_topic(topics.exceptions) or set()
    if not parts:
        await consumer.stop()
        raise RuntimeError(f"no partitions for {topics.exceptions}")
    tps = [TopicPartition(topics.exceptions, p) for p in parts]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    arrivals: list[tuple[float, dict[str, Any]]] = []
    stop = asyncio.Event()

    async def collect() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            arrivals.extend(
                (now, orjson.loads(r.value)) for records in batch.values() for r in records
            )

    collector = asyncio.create_task(collect())
    try:
        t0 = time.monotonic()
        sent, expected = await paced_traffic(bootstrap, topics, rate, seconds)
        took = time.monotonic() - t0
        await asyncio.sleep(settle)  # the last backdated deadlines pass, then a margin
    finally:
        stop.set()
        await collector
        await consumer.stop()
    timeout: list[float] = []
    event: list[float] = []
    for at, exc in arrivals:
        if exc["state"] != "raised" or (exc["rule_id"], exc["subject"]) not in expected:
            continue
        lag = at - datetime.fromisoformat(exc["event_time"]).timestamp()
        (timeout if exc["rule_id"] in TIMEOUT_RULES else event).append(lag)
    return Latencies(timeout, event, sent, took)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


# --- restart -------------------------------------------------------------------------------


def restart_to_ready(broker: EmbeddedBroker, workdir: Path, orders: int) -> dict[str, float]:
    """Feed a worker ``orders`` orders' day of events, SIGKILL it, time the restart to /readyz."""
    topics = Topics()
    asyncio.run(topics.create(broker.bootstrap))
    sim = Simulator(SimConfig(seed=7, orders=orders, anomaly_rate=0.03))
    names = {stream: topics.name(base) for stream, base in TOPICS.items()}
    records = []
    for event in sim.events():
        topic, key = topic_and_key(event, names)
        records.append((topic, key.encode(), orjson.dumps(event)))
    t = time.monotonic()
    first = WorkerProcess(broker.bootstrap, topics, workdir).start(timeout=120)
    cold = time.monotonic() - t
    try:
        asyncio.run(send_all(broker.bootstrap, records))
        fed = worker_consume(first, len(records), within=300)
        drained = wait_drained(broker.bootstrap, first, within=120)
    finally:
        first.kill()
    second = WorkerProcess(broker.bootstrap, topics, workdir)
    t = time.monotonic()
    try:
        second.start(timeout=300)
        restart = time.monotonic() - t
        restored, until = 0.0, time.monotonic() + 15  # the shard gauges refresh every 10 s
        while not restored and time.monotonic() < until:
            time.sleep(0.5)
            restored = metric_sum(second, "orderwatch_state_shards")
    finally:
        second.stop()
    return {
        "orders": orders,
        "events": len(records),
        "feed_rate": fed.rate,
        "fed_complete": float(fed.complete and drained is not None),
        "restored_shards": restored,
        "cold_start_s": cold,
        "restart_s": restart,
    }


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="paced traffic, events/s")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--within", type=float, default=180.0, help="deadline per consumer")
    parser.add_argument("--restart-orders", type=int, default=0, help="0: skip the restart")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    parser.add_argument(
        "--only",
        choices=("all", "throughput", "latency"),
        default="all",
        help="throughput: (b), (b') and (c) alone (an A/B of the worker); latency: step 3 alone",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy (a dev tool) samples the worker (c): an SVG, or collapsed stacks (.txt)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="orderwatch-bench-"))
    figures = run(args, workdir)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, logs in {workdir}")
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        if args.only != "latency":
            figures |= throughput(args, broker, workdir)
        if args.only != "throughput":
            figures |= latency(args, broker, workdir)
        if args.restart_orders and args.only == "all":
            r = restart_to_ready(broker, workdir, args.restart_orders)
            print(
                f"restart to ready with {r['orders']:,.0f} orders ({r['events']:,.0f} events, "
                f"{r['restored_shards']:,.0f} shards restored from the changelog): "
                f"{r['restart_s']:.1f} s  (cold start {r['cold_start_s']:.1f} s)"
            )
            figures |= {f"restart_{k}": v for k, v in r.items()}
    return figures


def profile(worker: WorkerProcess, svg: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the worker until SIGINT, or None without ``--profile``."""
    if svg is None or worker.proc is None:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    fmt = "flamegraph" if svg.suffix == ".svg" else "raw"  # raw: collapsed stacks, one a line
    cmd = [str(spy), "record", "-f", fmt, "-o", str(svg), "-r", "100", "-p", str(worker.proc.pid)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def throughput(args: argparse.Namespace, broker: EmbeddedBroker, workdir: Path) -> dict[str, float]:
    """Steps 1 and 2: one day produced, then (a), (b), (b') and the worker (c) read it."""
    figures: dict[str, float] = {}
    topics = Topics()
    asyncio.run(topics.create(broker.bootstrap))
    t = time.monotonic()
    records = day_of_events(args.events, topics)
    mix = Counter(topic.split("-", 1)[1] for topic, _, _ in records)
    asyncio.run(send_all(broker.bootstrap, records))
    n = len(records)
    print(f"produced {n:,} events in {time.monotonic() - t:.1f} s: {dict(mix.most_common())}")
    sources = [topics.name(base) for base in TOPICS.values()]

    everything = args.only == "all"
    raw = (
        asyncio.run(raw_consume(broker.bootstrap, sources, n, args.within))
        if everything
        else Span()
    )
    if everything:
        print(f"(a) aiokafka + decode:    {raw.rate:9,.0f} events/s{note(raw, n)}")
    bare = run_faust(broker.bootstrap, sources, n, workdir, args.within + 30)
    print(f"(b) bare Faust + decode:  {bare.rate:9,.0f} events/s{note(bare, n)}")
    # (b') in a throughput-only run too: the worker's fair baseline is Faust with its tweaks
    direct = Span()
    if args.only != "latency":
        direct = run_faust(broker.bootstrap, sources, n, workdir, args.within + 30, direct=True)
        print(f"(b') the same, worker's tweaks: {direct.rate:9,.0f} events/s{note(direct, n)}")

    # a recorded day is a backfill: judged on its own clock, as replay judges it. On the wall
    # clock every order the sample cuts off mid-flight would time out at once, publishing
    # thousands of exceptions no live day produces
    worker = WorkerProcess(broker.bootstrap, topics, workdir, clock="event").start(timeout=120)
    spy = profile(worker, args.profile)
    try:
        full = worker_consume(worker, n, args.within)
        pid = worker.proc.pid if worker.proc is not None else 0
        read_cpu = full.cpu + process_cpu(pid)
        print(f"(c) orderwatch worker:    {full.rate:9,.0f} events/s{note(full, n)}")
        ratio = full.rate / bare.rate if bare.rate else float("nan")
        print(f"worker / bare Faust: {ratio:.2f}")
        if direct.rate:
            print(f"worker / bare Faust with the worker's tweaks: {full.rate / direct.rate:.2f}")
        drained = wait_applied(worker, within=args.within)
        print(
            "    detector caught up (every routed event applied): "
            + (
                f"{drained:.1f} s after the last event was read"
                if drained is not None
                else "not yet"
            )
        )
        e2e = n / (span_s(full) + drained) if drained is not None and full.complete else 0.0
        e2e_cpu = full.cpu + process_cpu(pid)
        if e2e:
            print(
                f"    worker end to end (first read -> detector done): {e2e:,.0f} events/s"
                + (f" ({e2e / bare.rate:.2f} of bare Faust)" if bare.rate else "")
            )
        if bare.cpu:
            # on two shared cores the rates follow the CPU each process needs per event
            print(
                f"    CPU from the first event on: (b) {bare.cpu:.1f} s, (c) read "
                f"{read_cpu:.1f} s, end to end {e2e_cpu:.1f} s ({e2e_cpu / bare.cpu:.2f}x (b)); "
                f"the worker's whole life {process_cpu(pid):.1f} s"
            )
        figures |= {
            "events": n,
            "worker_e2e_eps": e2e,
            "raw_eps": raw.rate,
            "faust_eps": bare.rate,
            "faust_direct_eps": direct.rate,
            "worker_over_faust_direct": full.rate / direct.rate if direct.rate else float("nan"),
            "worker_eps": full.rate,
            "worker_over_faust": ratio,
            "faust_cpu_s": bare.cpu,
            "worker_cpu_s": e2e_cpu,
            "worker_exceptions": settled(worker, "orderwatch_exceptions_published_total"),
        }
        print(f"    exceptions published: {figures['worker_exceptions']:,.0f}")
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its flame graph and exits
            spy.wait(60)
        worker.stop()
    return figures


def latency(args: argparse.Namespace, broker: EmbeddedBroker, workdir: Path) -> dict[str, float]:
    """Step 3: a worker on the wall clock under paced traffic."""
    figures: dict[str, float] = {}
    # latency: live traffic on fresh topics, a worker on the wall clock (the default)
    live = Topics()
    asyncio.run(live.create(broker.bootstrap))
    worker = WorkerProcess(broker.bootstrap, live, workdir).start(timeout=120)
    try:
        lat = asyncio.run(
            measure_latency(broker.bootstrap, live, args.rate, args.latency_seconds, 12.0)
        )
    finally:
        worker.stop()
    print(
        f"paced traffic: {lat.sent:,} events in {lat.seconds:.0f} s "
        f"({lat.sent / lat.seconds:,.0f} events/s)"
    )
    for label, values in (
        ("deadline -> exception", lat.timeout),
        ("event -> exception   ", lat.event),
    ):
        print(
            f"{label}: p50 {pct(values, 50) * 1e3:7.0f} ms  "
            f"p99 {pct(values, 99) * 1e3:7.0f} ms  ({len(values)} exceptions)"
        )
    figures |= {
        "latency_rate": lat.sent / lat.seconds,
        "timeout_p50": pct(lat.timeout, 50),
        "timeout_p99": pct(lat.timeout, 99),
        "timeout_n": len(lat.timeout),
        "event_p50": pct(lat.event, 50),
        "event_p99": pct(lat.event, 99),
        "event_n": len(lat.event),
    }
    return figures


def note(span: Span, expect: int) -> str:
    secs = span_s(span)
    done = "" if span.complete else f"  INCOMPLETE: {span.events:,} of {expect:,}"
    return f"  ({span.events:,} events in {secs:.1f} s){done}"


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == FAUST_CHILD:
        _, _, bootstrap, names, expect, out, delivery = sys.argv
        faust_child(bootstrap, names.split(","), int(expect), Path(out), delivery == "direct")
    else:
        main()
