"""Size of the KPI state over a simulated day: each hour's KPI shard ``g:kpis/<start>`` is
written whole to the changelog at every commit that changed it, and read whole at a restart or a
cache miss, so its peak size says whether the indicators' state scales with an hour's traffic or
with a day's (the earlier layout, one ``g:kpis`` for every hour and a day of payments, did).

    .venv/bin/python bench/bench_kpi_size.py [--orders 15000] [--every 25000]

Prints the peak over the day (sampled every ``--every`` events, plain engine steps): the
largest KPI shard's JSON bytes, its items and the time of one ``orjson.dumps`` of it (best of
3), the most JSON all KPI shards held at once, and at the end of the day what the payments' KPI
state adds to the orders' shards (``OrderShard.pay_kpi``: JSON bytes and heap bytes per order).
Run the same command on main's code (``git archive main src rules bench``, its own
``bench/bench_kpi_size.py``) for the earlier layout's figures.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from orderwatch.engine import Engine, ReplayClock
from orderwatch.engine.state import KPIS, KpiShard, OrderShard
from orderwatch.events.codec import decode_event
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator, write_file


def measure(path: Path, every: int) -> dict[str, Any]:
    engine = Engine(load_catalog(), track_dirty=False)
    clock = ReplayClock()
    peak: dict[str, Any] = {"bytes": 0, "total_bytes": 0}
    events = 0
    with path.open("rb") as f:
        for line in f:
            event = decode_event(line)
            engine.step(event, clock.observe(event.occurred_ts))
            events += 1
            if events % every:
                continue
            kpis = [s for k, s in engine.shards.items() if k.startswith(KPIS)]
            sizes = [(len(orjson.dumps(s.to_dict())), s) for s in kpis if isinstance(s, KpiShard)]
            total = sum(size for size, _ in sizes)
            if total > peak["total_bytes"]:
                peak["total_bytes"], peak["shards"] = total, len(sizes)
            size, shard = max(sizes, key=lambda x: x[0], default=(0, None))
            if shard is not None and size > peak["bytes"]:
                peak.update(
                    bytes=size,
                    key=shard.key,
                    items=sum(len(w) for w in shard.windows.values()),
                    windows=len(shard.windows),
                    dumps_ms=_dumps_ms(shard),
                )
    peak["events"] = events
    peak.update(_order_bytes(engine))
    return peak


def _order_bytes(engine: Engine) -> dict[str, Any]:
    """What ``pay_kpi`` adds to the orders' shards at the end of the day: JSON (its key and
    value in the shard's changelog form) and heap (its tuple; a payment_id counts when it is
    not the same string as the key of the order's ``payments`` entry)."""
    orders = with_pay = json_bytes = heap = 0
    for shard in engine.shards.values():
        if type(shard) is not OrderShard:
            continue
        orders += 1
        entries = shard.pay_kpi
        if not entries:
            continue
        with_pay += 1
        json_bytes += len(orjson.dumps({"pay_kpi": entries})) - 2 + 1  # ,"pay_kpi":[...]
        heap += sys.getsizeof(entries)
        keys = {id(k) for k in shard.payments}
        for i in range(0, len(entries), 4):  # the hour's float and the method are shared
            if id(entries[i]) not in keys:
                heap += sys.getsizeof(entries[i])
    return {
        "orders": orders,
        "pay_kpi_orders": with_pay,
        "pay_kpi_json": json_bytes,
        "pay_kpi_heap": heap,
    }


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
        n = max(p["orders"], 1)
        print(
            f"orders {args.orders:,}, events {p['events']:,}: largest KPI shard JSON "
            f"{p['bytes']:,} B ({p.get('key')}: {p.get('items', 0):,} items in "
            f"{p.get('windows', 0)} windows), orjson.dumps {p.get('dumps_ms', 0.0):.2f} ms; "
            f"all KPI shards at most {p['total_bytes']:,} B in {p.get('shards', 0)} shards; "
            f"pay_kpi on {p['pay_kpi_orders']:,} of {p['orders']:,} order shards: "
            f"{p['pay_kpi_json'] / n:.1f} B of JSON and {p['pay_kpi_heap'] / n:.1f} B of heap "
            f"per order shard"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
