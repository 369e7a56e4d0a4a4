"""Throughput and memory of decode + engine on one core, over a simulated day of mixed traffic.

Why a simulated day and not a micro-benchmark: the engine's cost depends on the mix (a snapshot is
cheap, an ``order.created`` touches four shards) and its memory on how many orders are held at
once, so only realistic traffic gives figures that mean something for sizing a worker.

    .venv/bin/python bench/bench_engine.py [--orders 55000] [--profile 200000] [--tracemalloc]

Figures printed (goals in brackets, printed, never asserted):
  events/s decode+engine, events/s engine alone (pre-decoded, in chunks)       [>= 100,000]
  exceptions produced, order shards held at peak (the engine keeps an order's shard for its
  retention period, so within one simulated day the peak is every order seen)
  memory per open order: RSS growth over the decode+engine pass / order shards at peak, or, with
  --tracemalloc, the traced heap at peak / order shards (slower, exact for Python objects)
  [<= 1 KiB]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from orderwatch.engine import Engine, ReplayClock
from orderwatch.engine.atomic import step as atomic_step
from orderwatch.engine.state import ORDER
from orderwatch.events.codec import decode_event
from orderwatch.events.inbound import InboundEvent
from orderwatch.heap import tune_collector
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator, write_file

SAMPLE_EVERY = 50_000
CHUNK = 200_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def order_shards(engine: Engine) -> int:
    return sum(1 for key in engine.shards if key.startswith(ORDER))


def lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from f


def decode_and_run(path: Path, traced: bool) -> dict[str, float]:
    """One pass as replay does it (minus writing output), sampling memory as state grows."""
    gc.collect()
    if traced:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0] if traced else rss_bytes()
    engine = Engine(load_catalog(), track_dirty=False)
    clock = ReplayClock()
    step = engine.step
    exceptions = events = 0
    peak_orders, peak_bytes = 0, 0
    sampling = 0.0  # the samples walk every shard: their time is the bench's, not the engine's
    started = time.perf_counter()
    for line in lines(path):
        event = decode_event(line)
        exceptions += len(step(event, clock.observe(event.occurred_ts)))
        events += 1
        if events % SAMPLE_EVERY == 0:
            t0 = time.perf_counter()
            held = order_shards(engine)
            now_bytes = (tracemalloc.get_traced_memory()[0] if traced else rss_bytes()) - base
            if held >= peak_orders:
                peak_orders, peak_bytes = held, now_bytes
            sampling += time.perf_counter() - t0
    exceptions += len(engine.sweep(clock.finish(None)))
    elapsed = time.perf_counter() - started - sampling
    held = order_shards(engine)
    now_bytes = (tracemalloc.get_traced_memory()[0] if traced else rss_bytes()) - base
    if held >= peak_orders:
        peak_orders, peak_bytes = held, now_bytes
    if traced:
        tracemalloc.stop()
    return {
        "events": events,
        "seconds": elapsed,
        "exceptions": exceptions,
        "peak_orders": peak_orders,
        "peak_bytes": peak_bytes,
        "open_exceptions": engine.open_count(),
        "shards": len(engine.shards),
    }


def engine_alone(path: Path, atomic: bool = False) -> tuple[int, float]:
    """Decode a chunk untimed, then time the engine over it: the engine's share of the cost.

    ``atomic``: each step all or nothing (``engine.atomic``), as the worker and replay run it;
    the difference is what the copy of an event's shards before each step costs.
    """
    engine = Engine(load_catalog(), track_dirty=False)
    clock = ReplayClock()
    step: Any = functools.partial(atomic_step, engine, then=list) if atomic else engine.step
    events, elapsed = 0, 0.0
    chunk: list[InboundEvent] = []

    def run(batch: list[InboundEvent]) -> float:
        t0 = time.perf_counter()
        for event in batch:
            step(event, clock.observe(event.occurred_ts))
        return time.perf_counter() - t0

    for line in lines(path):
        chunk.append(decode_event(line))
        if len(chunk) >= CHUNK:
            elapsed += run(chunk)
            events += len(chunk)
            chunk = []
    elapsed += run(chunk)
    events += len(chunk)
    return events, elapsed


def profile(path: Path, limit: int, top: int) -> None:
    """cProfile over the first ``limit`` events of decode + engine, top functions by own time."""
    engine = Engine(load_catalog())
    clock = ReplayClock()

    def body() -> None:
        for n, line in enumerate(lines(path)):
            if n >= limit:
                break
            event = decode_event(line)
            engine.step(event, clock.observe(event.occurred_ts))

    prof = cProfile.Profile()
    prof.runcall(body)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def main() -> None:
    tune_collector()  # as `orderwatch replay` and the worker run
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=55_000, help="healthy orders in the day")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--anomaly-rate", type=float, default=0.03)
    parser.add_argument("--keep", type=Path, help="write the events here and keep them")
    parser.add_argument("--tracemalloc", action="store_true", help="exact heap, slower")
    parser.add_argument("--profile", type=int, default=0, help="cProfile the first N events")
    parser.add_argument("--skip-engine-alone", action="store_true")
    args = parser.parse_args()

    tmp = None if args.keep else Path(tempfile.mkdtemp(prefix="orderwatch-bench-"))
    path: Path = args.keep or (tmp / "day.jsonl")  # type: ignore[operator]
    try:
        t0 = time.perf_counter()
        sim = Simulator(
            SimConfig(seed=args.seed, orders=args.orders, anomaly_rate=args.anomaly_rate)
        )
        manifest = write_file(sim, path)
        gen_s = time.perf_counter() - t0
        types = Counter(orjson.loads(line)["type"].split(".")[0] for line in lines(path))
        size = path.stat().st_size
        print(f"simulated {manifest['events']:,} events ({size / 2**20:.0f} MiB) in {gen_s:.1f} s")
        print(f"  streams: {dict(types.most_common())}")
        print(f"  injected anomalies: {len(manifest['expected']):,} expected exceptions")
        print(f"  span {manifest['start']} .. {manifest['end']}")
        print(f"  python {sys.version.split()[0]}, one core, pid {os.getpid()}")

        if args.profile:
            profile(path, args.profile, 30)

        full = decode_and_run(path, args.tracemalloc)
        rate = full["events"] / full["seconds"]
        print(f"decode+engine: {rate:,.0f} events/s ({full['seconds']:.1f} s)  [goal >= 100,000]")
        if not args.skip_engine_alone:
            n, secs = engine_alone(path)
            print(f"engine alone:  {n / secs:,.0f} events/s ({secs:.1f} s, pre-decoded)")
            n, atomic_secs = engine_alone(path, atomic=True)
            print(
                f"engine alone, atomic steps: {n / atomic_secs:,.0f} events/s "
                f"({atomic_secs:.1f} s; {secs / atomic_secs:.2f} of plain steps in this run)"
            )
        print(f"exceptions produced: {full['exceptions']:,.0f}")
        print(
            f"order shards held at peak: {full['peak_orders']:,.0f} "
            f"(all shards {full['shards']:,.0f}, open exceptions {full['open_exceptions']:,.0f})"
        )
        how = "tracemalloc heap" if args.tracemalloc else "RSS growth"
        per = full["peak_bytes"] / max(full["peak_orders"], 1)
        if not args.tracemalloc and per < 256:
            # the decoded chunks freed before the pass leave memory the engine's state reuses,
            # so RSS hardly grows: a figure from it would be flattering nonsense
            print(
                "memory per open order: not measurable from RSS on this run "
                f"(grew {full['peak_bytes'] / 2**20:,.0f} MiB); use --tracemalloc  [goal <= 1,024]"
            )
        else:
            print(
                f"memory per open order: {per:,.0f} B ({how} {full['peak_bytes'] / 2**20:,.0f} "
                "MiB / order shards; includes address, phone, customer and stock shards)  "
                "[goal <= 1,024]"
            )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
