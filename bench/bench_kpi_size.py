"""Size of the KPI shard ``g:kpis`` over a simulated day: its JSON is written whole to the
changelog at every commit that changed it, and read whole at a restart or a cache miss, so its
peak size says whether a single shard of indicators scales with traffic.

    .venv/bin/python bench/bench_kpi_size.py [--orders 15000] [--every 25000]

Prints the peak over the day (sampled every ``--every`` events, plain engine steps): total
JSON bytes, the part of the payments and of the windows, their entries, and the time of one
``orjson.dumps`` of the shard at its peak (best of 3).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from orderwatch.engine import Engine, ReplayClock
from orderwatch.engine.state import KPIS, KpiShard
from orderwatch.events.codec import decode_event
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator, write_file


def measure(path: Path, every: int) -> dict[str, Any]:
    engine = Engine(load_catalog(), track_dirty=False)
    clock = ReplayClock()
    peak: dict[str, Any] = {"bytes": 0}
    events = 0
    with path.open("rb") as f:
        for line in f:
            event = decode_event(line)
            engine.step(event, clock.observe(event.occurred_ts))
            events += 1
            shard = engine.shards.get(KPIS)
            if events % every or not isinstance(shard, KpiShard):
                continue
            size = len(orjson.dumps(shard.to_dict()))
            if size > peak["bytes"]:
                peak = {
                    "bytes": size,
                    "payments_bytes": len(orjson.dumps(shard.payments)),
                    "windows_bytes": len(orjson.dumps(shard.windows)),
                    "payments": len(shard.payments),
                    "items": sum(len(w) for w in shard.windows.values()),
                    "windows": len(shard.windows),
                    "dumps_ms": _dumps_ms(shard),
                }
    peak["events"] = events
    return peak


def _dumps_ms(shard: KpiShard) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        orjson.dumps(shard.to_dict())
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=15_000, help="healthy orders in the day")
    parser.add_argument("--every", type=int, default=25_000, help="sample every N events")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="orderwatch-kpisize-"))
    try:
        path = tmp / "day.jsonl"
        write_file(Simulator(SimConfig(seed=args.seed, orders=args.orders)), path)
        p = measure(path, args.every)
        print(
            f"orders {args.orders:,}, events {p['events']:,}: peak KPI shard JSON "
            f"{p['bytes']:,} B (payments {p.get('payments_bytes', 0):,} B in "
            f"{p.get('payments', 0):,} entries; windows {p.get('windows_bytes', 0):,} B, "
            f"{p.get('items', 0):,} orders in {p.get('windows', 0)} windows); "
            f"orjson.dumps {p.get('dumps_ms', 0.0):.1f} ms"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
