"""State at production size: the worker on its RocksDB store with N open orders, on Tansu.

    .venv/bin/python bench/bench_state.py --store-orders 100000,250000 --quick-orders 10000

Per N (``--store-orders``), in one run on one embedded Tansu broker:

  1. a cold worker on empty topics and an empty state directory: seconds to /readyz, its RSS;
  2. N open orders (created, then paid, so ``payment.paid_not_updated`` and
     ``logistics.not_shipped`` are pending, due hours from now) **seeded directly**: one changelog
     record per order produced to the state changelog (what a compacted changelog holds: Tansu
     never compacts, so a changelog grown by a real day would hold every write of every shard)
     and the same records written into the partitions' RocksDB databases with the changelog
     offsets they reach, as a worker that had written them and was killed leaves its directory.
     One more order is seeded with ``payment.paid_not_updated`` already due (a timeout that fell
     due during the downtime);
  3. a worker started on that directory: seconds to /readyz, how soon after ready the overdue
     timeout's exception is on the topic, its RSS; then kill -9 and a restart on the same
     directory: seconds to /readyz again;
  4. failover: a worker on an empty directory recovers the N records from the changelog:
     records/s of Faust's changelog read (from its log: highwater table to "Restore complete")
     and seconds to /readyz;
  5. disk: bytes of the state directory per order.

``--quick-orders`` runs the 10,000-order quick check: cold RSS and cold start of a worker, a
simulated day of that many orders through it, RSS after the day, kill -9, restart-to-ready.

Absolute figures move with the load of this 2-core machine (other processes share it): the goals
are judged on ratios inside one run where they allow (restart / cold start, RSS / cold RSS).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from orderwatch.broker import EmbeddedBroker
from orderwatch.engine import Engine
from orderwatch.engine.state import ORDER
from orderwatch.events.inbound import EVENT_ADAPTER
from orderwatch.heap import RELEASE_EVERY
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import TOPICS, SimConfig, Simulator, topic_and_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.shell import partition_for
from agents.store import MARKER, _marker, apply_writes
from tests.factories import created, paid
from tests.integration.harness import Topics, WorkerProcess

from orderwatch.engine.state import FORMAT_VERSION

PARTITIONS = 4
#: what the template order's ids are replaced with, per order
ORDER_TOKEN, PAY_TOKEN, CREATED_TOKEN, PAID_TOKEN = "ORDX", "PAYX", "EVCX", "EVPX"
END_MARK = b"~end"


def rss(pid: int) -> int:
    """Resident set size of a process, bytes (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def order_template(created_at: float) -> dict[str, Any]:
    """The stored form of an order created at ``created_at`` and paid a minute later, as the
    engine writes it (so the bench follows the shard format)."""
    engine = Engine(load_catalog())
    for raw in (
        created(ORDER_TOKEN, at=iso(created_at), event_id=CREATED_TOKEN),
        paid(ORDER_TOKEN, at=iso(created_at + 60), payment_id=PAY_TOKEN, event_id=PAID_TOKEN),
    ):
        event = EVENT_ADAPTER.validate_python(raw)
        engine.step(event, event.occurred_ts)
    data: dict[str, Any] = engine.shards[ORDER + ORDER_TOKEN].to_dict()
    assert data["v"] == FORMAT_VERSION
    return data


def _copy(value: Any, tokens: dict[str, str], shift: float) -> Any:
    if isinstance(value, float) and value > 1e9:
        return value + shift
    if isinstance(value, str):
        for token, new in tokens.items():
            if token in value:
                value = value.replace(token, new)
        return value
    if isinstance(value, dict):
        return {_copy(k, tokens, 0.0): _copy(v, tokens, shift) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v, tokens, shift) for v in value]
    return value


def order_value(template: dict[str, Any], i: int, shift: float) -> tuple[str, bytes]:
    oid = f"SB{i:010d}"
    tokens = {
        ORDER_TOKEN: oid,
        PAY_TOKEN: f"PB{i:010d}",
        CREATED_TOKEN: f"evc-{i:010d}",
        PAID_TOKEN: f"evp-{i:010d}",
    }
    data = _copy(template, tokens, shift)
    return data["key"], orjson.dumps(data)


def seeded_orders(n: int, overdue_id: int) -> Any:
    """(key, value) of ``n`` open orders due hours from now, then one overdue order."""
    now = time.time()
    future = order_template(now + 3 * 3600)  # deadlines 3 h and more from now
    for i in range(n):
        yield order_value(future, i, i * 0.0005)
    # paid 10 min 20 s ago: payment.paid_not_updated fell due 20 s ago
    yield order_value(order_template(now - 60 - 620), overdue_id, 0.0)


async def produce_changelog(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]
) -> dict[int, int]:
    """The records into the changelog, one record batch after another per partition, then an
    end mark per partition (as the worker ends each flush); returns each end mark's offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=1024 * 1024)
    await producer.start()
    try:
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(PARTITIONS)}
        for key, value in records:
            by_partition[partition_for(key, PARTITIONS)].append((key, value))
        marks: dict[int, Any] = {}
        for p, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    await producer.send_batch(batch, topic, partition=p)
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            if batch.record_count():
                await producer.send_batch(batch, topic, partition=p)
            await producer.flush()
            mark = producer.create_batch()
            mark.append(key=END_MARK, value=None, timestamp=None)
            marks[p] = await producer.send_batch(mark, topic, partition=p)
            await producer.flush()
        return {p: (await fut).offset for p, fut in marks.items()}
    finally:
        await producer.stop()


def seed_store(
    tabledir: Path, app_id: str, records: list[tuple[bytes, bytes]], offsets: dict[int, int]
) -> None:
    """The records into the partitions' RocksDB databases with their changelog offsets, as the
    worker leaves them (Faust's paths and raw keys; the worker's marker file)."""
    from rocksdict import Options, Rdict

    tabledir.mkdir(parents=True, exist_ok=True)
    dbs = {
        p: Rdict(str(tabledir / f"state-{p}.db"), options=Options(raw_mode=True))
        for p in range(PARTITIONS)
    }
    try:
        # as the worker writes a flush: the shards with their timer index, one batch per part
        writes: dict[int, dict[bytes, bytes | None]] = {p: {} for p in range(PARTITIONS)}
        for n, (key, value) in enumerate(records, 1):
            writes[partition_for(key, PARTITIONS)][key] = value
            if n % 20_000 == 0:
                for p, items in writes.items():
                    apply_writes(dbs[p], items)
                writes = {p: {} for p in range(PARTITIONS)}
        for p, items in writes.items():
            apply_writes(dbs[p], items, offsets[p])
            dbs[p].flush()
    finally:
        for db in dbs.values():
            db.close()
    (tabledir / MARKER).write_text(orjson.dumps(_marker(app_id, PARTITIONS)).decode())


async def first_exception(bootstrap: str, topic: str, subject: str, within: float) -> float | None:
    """Monotonic time the first exception of ``subject`` is read from the topic."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    if record.key == subject.encode():
                        return time.monotonic()
        return None
    finally:
        await consumer.stop()


def start_timed(worker: WorkerProcess, within: float = 600) -> float:
    """Launch and wait for /readyz; seconds from launch to ready."""
    started = time.monotonic()
    worker.launch()
    while not worker.ready():
        if not worker.alive():
            raise RuntimeError(f"worker died:\n{worker.log()[-3000:]}")
        if time.monotonic() - started > within:
            raise RuntimeError(f"worker not ready after {within} s")
        time.sleep(0.05)
    return time.monotonic() - started


def recovery_read_seconds(log: str) -> float | None:
    """Faust's changelog read of the last recovery in a log: highwater table to restore end."""
    stamps = re.findall(r"^(\S+Z) .*?(Highwater for active|Restore complete)", log, re.M)
    start = end = None
    for stamp, what in stamps:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        if what.startswith("Highwater"):
            start, end = t, None
        elif start is not None:
            end = t
    return end - start if start is not None and end is not None else None


def catch_up(log: str) -> tuple[float, float]:
    """(records, seconds) of the worker's last changelog catch-up (agents/store.py's log)."""
    found = re.findall(r"changelog catch-up: (\d+) records in ([\d.]+) s", log)
    if not found:
        return 0.0, 0.0
    records, seconds = found[-1]
    return float(records), float(seconds)


def index_seconds(log: str) -> float:
    found = re.findall(r"deadline index: \d+ stored entries read in ([\d.]+) s", log)
    return float(found[-1]) if found else -1.0


def store_run(broker: EmbeddedBroker, workdir: Path, n: int) -> dict[str, float]:
    topics = Topics()
    asyncio.run(topics.create(broker.bootstrap))
    app_id = topics.env()["ORDERWATCH_APP_ID"]
    changelog = f"{app_id}-state-changelog"
    figures: dict[str, float] = {"orders": n}

    def worker(name: str) -> WorkerProcess:
        (workdir / name).mkdir(exist_ok=True)
        return WorkerProcess(broker.bootstrap, topics, workdir / name, store="rocksdb")

    cold = worker("cold")
    figures["cold_start_s"] = start_timed(cold)
    time.sleep(2)
    figures["cold_rss"] = rss(cold.proc.pid)  # type: ignore[union-attr]
    cold.stop()  # it declared the changelog topic

    started = time.monotonic()
    records = [(k.encode(), v) for k, v in seeded_orders(n, overdue_id=n)]
    figures["value_bytes"] = sum(len(v) for _, v in records) / len(records)
    offsets = asyncio.run(produce_changelog(broker.bootstrap, changelog, records))
    figures["produce_s"] = time.monotonic() - started
    tabledir = workdir / "restart" / "data" / "v1" / "tables"
    started = time.monotonic()
    seed_store(tabledir, app_id, records, offsets)
    figures["seed_s"] = time.monotonic() - started
    overdue = f"SB{n:010d}"
    del records

    restarted = worker("restart")
    loop = asyncio.new_event_loop()
    watch = loop.create_task(first_exception(broker.bootstrap, topics.exceptions, overdue, 600))
    figures["restart_s"] = loop.run_until_complete(asyncio.to_thread(start_timed, restarted))
    ready_at = time.monotonic()
    fired = loop.run_until_complete(watch)
    loop.close()
    figures["overdue_fired_after_ready_s"] = (fired - ready_at) if fired else -1.0
    time.sleep(3)
    figures["rss"] = rss(restarted.proc.pid)  # type: ignore[union-attr]
    restarted.kill()
    again = worker("restart")
    figures["restart_after_kill_s"] = start_timed(again)
    time.sleep(3)
    figures["rss_after_kill"] = rss(again.proc.pid)  # type: ignore[union-attr]
    again.kill()
    figures["disk_bytes"] = du(tabledir)

    figures["restart_index_s"] = index_seconds(again.log())
    figures["restart_loadavg"] = os.getloadavg()[0]
    failover = worker("failover")
    figures["failover_ready_s"] = start_timed(failover)
    read = recovery_read_seconds(failover.log())
    figures["failover_faust_tail_s"] = read if read is not None else -1.0
    caught, seconds = catch_up(failover.log())
    figures["failover_records"] = caught
    figures["failover_read_s"] = seconds
    figures["failover_records_per_s"] = caught / seconds if seconds else -1.0
    figures["failover_index_s"] = index_seconds(failover.log())
    time.sleep(3)
    figures["failover_rss"] = rss(failover.proc.pid)  # type: ignore[union-attr]
    failover.kill()
    figures["failover_disk_bytes"] = du(workdir / "failover" / "data")
    # the logs stay (with --keep); the databases go
    shutil.rmtree(workdir / "restart" / "data", ignore_errors=True)
    shutil.rmtree(workdir / "failover" / "data", ignore_errors=True)
    return figures


def quick_run(
    broker: EmbeddedBroker, workdir: Path, orders: int, clock: str = "event"
) -> dict[str, Any]:
    """The 10,000-order quick check: RSS and start-up of a cold worker against the same after a
    day of that many orders (kill -9, restart on the same directory).

    The day is the simulator's 2026-11-20, a past day: fed as the backfill it is, on the event
    clock (``clock="event"``, the default). On the wall clock (``"wall"``, as the check ran
    before 2026-12-03's stop) every deadline of the day is overdue on arrival and fires before
    the events that would have met it are read: ~9 exceptions raised and resolved per order,
    state no live day holds (see docs/benchmarks.md, "The 10,000-order quick check again").
    ``ORDERWATCH_*`` variables of the bench (``ORDERWATCH_ALIGN_DRIFT=0``) reach its workers."""
    from bench_pipeline import send_all, wait_drained, worker_consume

    topics = Topics()
    asyncio.run(topics.create(broker.bootstrap))
    sim = Simulator(SimConfig(seed=7, orders=orders, anomaly_rate=0.03))
    names = {stream: topics.name(base) for stream, base in TOPICS.items()}
    records = []
    for event in sim.events():
        topic, key = topic_and_key(event, names)
        records.append((topic, key.encode(), orjson.dumps(event)))
    (workdir / "quick").mkdir(exist_ok=True)
    first = WorkerProcess(broker.bootstrap, topics, workdir / "quick", store="rocksdb", clock=clock)
    cold = start_timed(first)
    time.sleep(2)
    cold_rss = rss(first.proc.pid)  # type: ignore[union-attr]
    peak_parked = 0.0
    peak_rss = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_parked, peak_rss
        while not done.wait(1.0):
            peak_parked = max(peak_parked, first.metric("orderwatch_parked_events"))
            peak_rss = max(peak_rss, rss(first.proc.pid))  # type: ignore[union-attr]

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        asyncio.run(send_all(broker.bootstrap, records))
        fed = worker_consume(first, len(records), within=600)
        done.set()
        drained = wait_drained(broker.bootstrap, first, within=300)
        time.sleep(3)
        # "after the day": every shard message committed, then 3 s (the sampling point of every
        # earlier run); the worker may have released memory at the end of the backlog by then
        day_rss = rss(first.proc.pid)  # type: ignore[union-attr]
        day_at = datetime.now(UTC).strftime("%H:%M:%S")  # to find it in the worker's log
        released = first.log().count("memory released")
        lookups = first.metric("orderwatch_shard_cache_lookups_total")
        misses = first.metric("orderwatch_shard_cache_lookups_total", result="miss")
        cached = first.metric("orderwatch_shard_cache_shards")
        # the worker's once-a-minute full collection and malloc_trim (orderwatch/heap.py)
        time.sleep(RELEASE_EVERY + 5)
        settled_rss = rss(first.proc.pid)  # type: ignore[union-attr]
    finally:
        done.set()
        first.kill()
    second = WorkerProcess(
        broker.bootstrap, topics, workdir / "quick", store="rocksdb", clock=clock
    )
    restart = start_timed(second)
    time.sleep(3)
    restart_rss = rss(second.proc.pid)  # type: ignore[union-attr]
    second.kill()
    disk = du(workdir / "quick" / "data")
    for worker_log in (workdir / "quick").glob("worker-*.log"):  # kept with --keep
        shutil.copy(worker_log, workdir / f"quick-{worker_log.name}")
    shutil.rmtree(workdir / "quick", ignore_errors=True)
    return {
        "orders": orders,
        "clock": clock,
        "peak_parked": peak_parked,
        "peak_rss": peak_rss,
        "drained_s": drained if drained is not None else -1.0,
        "burst_releases": released,
        "cache_lookups": lookups,
        "cache_misses": misses,
        "cached_shards": cached,
        "events": len(records),
        "fed_rate": fed.rate,
        "cold_start_s": cold,
        "restart_s": restart,
        "cold_rss": cold_rss,
        "day_rss": day_rss,
        "day_at": day_at,
        "settled_rss": settled_rss,
        "restart_rss": restart_rss,
        "disk_bytes": disk,
    }


MiB = 1024 * 1024


def report_store(f: dict[str, float]) -> None:
    n = f["orders"]
    grown = f["rss"] - f["cold_rss"]
    print(
        f"store, {n:,.0f} open orders seeded ({f['value_bytes']:.0f} B per stored order, "
        f"changelog produced in {f['produce_s']:.0f} s, store written in {f['seed_s']:.0f} s):"
    )
    print(
        f"  cold start (empty): {f['cold_start_s']:.1f} s to ready, "
        f"RSS {f['cold_rss'] / MiB:.0f} MiB"
    )
    print(
        f"  restart on the state dir: {f['restart_s']:.1f} s to ready "
        f"({f['restart_s'] / f['cold_start_s']:.2f}x cold); overdue timeout on the topic "
        f"{f['overdue_fired_after_ready_s']:.2f} s after ready"
    )
    print(
        f"  after kill -9, restart on the same dir: {f['restart_after_kill_s']:.1f} s to ready "
        f"({f['restart_after_kill_s'] / f['cold_start_s']:.2f}x cold; timer index's first "
        f"chunk {f['restart_index_s']:.2f} s of it; load average {f['restart_loadavg']:.1f})"
    )
    print(
        f"  RSS at ready: {f['rss'] / MiB:.0f} MiB ({grown / n:.0f} B per open order over cold); "
        f"after the kill -9 restart {f['rss_after_kill'] / MiB:.0f} MiB"
    )
    print(
        f"  disk: {f['disk_bytes'] / MiB:.0f} MiB = {f['disk_bytes'] / n:.0f} B per open order "
        f"(seeded store); {f['failover_disk_bytes'] / n:.0f} B per order as recovery wrote it"
    )
    print(
        f"  failover, empty dir: changelog read at {f['failover_records_per_s']:,.0f} records/s "
        f"({f['failover_records']:,.0f} records, one per key as compacted, in "
        f"{f['failover_read_s']:.1f} s; Faust's recovery of the tail then "
        f"{f['failover_faust_tail_s']:.1f} s, timer index {f['failover_index_s']:.2f} s); "
        f"ready in {f['failover_ready_s']:.1f} s ({f['failover_ready_s'] / f['cold_start_s']:.2f}x "
        f"cold), RSS {f['failover_rss'] / MiB:.0f} MiB"
    )


def report_quick(f: dict[str, Any]) -> None:
    print(
        f"quick check, {f['orders']:,.0f} orders ({f['events']:,.0f} events fed at "
        f"{f['fed_rate']:,.0f}/s, {f['clock']} clock, at most {f['peak_parked']:,.0f} parked):"
    )
    print(
        f"  RSS cold {f['cold_rss'] / MiB:.0f} MiB, after the day {f['day_rss'] / MiB:.0f} MiB "
        f"({f['day_rss'] / f['cold_rss']:.2f}x, goal <= 2x), a minute later (after the "
        f"worker's collection and malloc_trim) {f['settled_rss'] / MiB:.0f} MiB "
        f"({f['settled_rss'] / f['cold_rss']:.2f}x), after restart "
        f"{f['restart_rss'] / MiB:.0f} MiB"
    )
    print(
        f"  RSS at most {f['peak_rss'] / MiB:.0f} MiB while fed (sampled each second); after "
        f"the day = every shard message committed ({f['drained_s']:.1f} s after the last event "
        f"was read) + 3 s, {f['day_at']} UTC; memory releases at the end of a burst (or idle "
        f"after one) before it: {f['burst_releases']}"
    )
    print(
        f"  shard cache after the day: {f['cached_shards']:,.0f} shards, "
        f"{f['cache_misses']:,.0f} misses of {f['cache_lookups']:,.0f} lookups "
        f"({f['cache_misses'] / max(f['cache_lookups'], 1):.1%}; a miss is a RocksDB read and "
        "a shard decode)"
    )
    print(
        f"  cold start {f['cold_start_s']:.1f} s, restart after kill -9 {f['restart_s']:.1f} s "
        f"({f['restart_s'] / f['cold_start_s']:.2f}x, goal <= 2x); disk "
        f"{f['disk_bytes'] / MiB:.1f} MiB"
    )


def run(
    store_orders: list[int], quick_orders: int, keep: bool = False, quick_clock: str = "event"
) -> list[dict[str, Any]]:
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="orderwatch-bench-state-"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, logs in {workdir}")
    results: list[dict[str, Any]] = []
    try:
        with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
            if quick_orders:
                q = quick_run(broker, workdir, quick_orders, quick_clock)
                report_quick(q)
                results.append(q)
            for n in store_orders:
                f = store_run(broker, workdir, n)
                report_store(f)
                results.append(f)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return results
