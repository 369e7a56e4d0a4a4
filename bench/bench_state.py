"""Deadline sweep cost against the number of open orders, and memory per open order.

The worker sweeps every half second, so a sweep must cost what is due, not what is held: a day's
backlog of open orders should not slow the tick. Two engines are filled with the same kind of open
order (a paid order whose status has not caught up yet, so ``payment.paid_not_updated`` is pending
on each) and differ only in how many they hold; each is then swept repeatedly with ~100 orders
due per sweep. Equal times (a ratio near 1, at most the heap's log factor) mean O(due).

    .venv/bin/python bench/bench_state.py [--large 1000000] [--small 10000] [--due 100]

Memory per open order is the RSS growth while the large engine fills, divided by its orders: an
order shard with its deadlines and heap entries, nothing else (``bench_engine.py`` gives the
figure over a realistic day, with customer, address, phone and stock shards included).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from orderwatch.engine import Engine
from orderwatch.engine.state import ORDER
from orderwatch.events.inbound import EVENT_ADAPTER, InboundEvent
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator

#: Seconds between two orders' payments: 1 M orders span 500 s, inside the 10-minute deadline
#: of ``payment.paid_not_updated``, so nothing fires while the engine fills.
SPACING = 0.0005


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def payment_template() -> InboundEvent:
    """A real ``payment.succeeded`` from the simulator, to be copied under new order ids."""
    sim = Simulator(SimConfig(seed=1, orders=50, anomaly_rate=0.0))
    raw = next(e for e in sim.events() if e["type"] == "payment.succeeded")
    return EVENT_ADAPTER.validate_python(raw)


@dataclass(frozen=True)
class Filled:
    engine: Engine
    orders: int
    start: float
    first_due: float
    rss_growth: int
    seconds: float


def fill(orders: int, template: InboundEvent | None = None) -> Filled:
    """An engine holding ``orders`` paid orders, each with its deadlines pending."""
    base = template or payment_template()
    t0 = base.occurred_at.timestamp()
    engine = Engine(load_catalog())
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    for i in range(orders):
        at = t0 + i * SPACING
        event = base.model_copy(
            update={
                "event_id": f"bench-{i:010d}",
                "order_id": f"SOB{i:010d}",
                "payment_id": f"PAYB{i:010d}",
                "occurred_at": datetime.fromtimestamp(at, UTC),
            }
        )
        engine.step(event, at)
    seconds = time.perf_counter() - started
    gc.collect()
    first_order = engine.shards[ORDER + "SOB" + "0" * 10]
    first_due = min(v for k, v in first_order.deadlines.items() if k != "evict")
    return Filled(engine, orders, t0, first_due, rss_bytes() - before, seconds)


@dataclass(frozen=True)
class SweepTiming:
    median_s: float
    exceptions_per_sweep: float
    sweeps: int


def time_sweeps(filled: Filled, due: int, sweeps: int) -> SweepTiming:
    """Sweep ``sweeps`` times, each advancing the clock past the next ``due`` orders."""
    times, fired = [], []
    for k in range(1, sweeps + 1):
        now = filled.first_due + (k * due - 0.5) * SPACING
        t = time.perf_counter()
        out = filled.engine.sweep(now)
        times.append(time.perf_counter() - t)
        fired.append(len(out))
    return SweepTiming(statistics.median(times), statistics.mean(fired), sweeps)


def run(large: int, small: int, due: int = 100, sweeps: int = 20) -> dict[str, float]:
    """Both engines, one at a time (the large one is dropped before the small one is built)."""
    template = payment_template()
    big = fill(large, template)
    big_sweep = time_sweeps(big, due, sweeps)
    figures = {
        "large_orders": large,
        "large_fill_s": big.seconds,
        "large_sweep_s": big_sweep.median_s,
        "exceptions_per_sweep": big_sweep.exceptions_per_sweep,
        "bytes_per_open_order": big.rss_growth / large,
    }
    del big
    gc.collect()
    little = fill(small, template)
    small_sweep = time_sweeps(little, due, sweeps)
    figures |= {
        "small_orders": small,
        "small_sweep_s": small_sweep.median_s,
        "sweep_ratio": big_sweep.median_s / small_sweep.median_s,
        "due_per_sweep": due,
    }
    return figures


def report(f: dict[str, float]) -> None:
    print(
        f"sweep with {f['large_orders']:,.0f} open orders: {f['large_sweep_s'] * 1e3:.2f} ms  "
        f"(median of 20, {f['due_per_sweep']:.0f} orders due, "
        f"{f['exceptions_per_sweep']:.0f} exceptions per sweep)"
    )
    print(f"sweep with {f['small_orders']:,.0f} open orders: {f['small_sweep_s'] * 1e3:.2f} ms")
    print(f"ratio large / small: {f['sweep_ratio']:.2f}  (1.0 = O(due); 100 would be O(open))")
    print(
        f"memory per open order: {f['bytes_per_open_order']:,.0f} B "
        f"(RSS growth over {f['large_orders']:,.0f} paid orders, order shard + deadlines; "
        f"filled in {f['large_fill_s']:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", type=int, default=1_000_000, help="0: skip the engine part")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=100, help="orders due per sweep")
    parser.add_argument(
        "--store-orders",
        default="",
        help="comma-separated N: the worker on its RocksDB store with N open orders "
        "(bench_store.py); empty: skip",
    )
    parser.add_argument(
        "--quick-orders", type=int, default=0, help="the quick check's day of orders (0: skip)"
    )
    parser.add_argument(
        "--quick-clock",
        choices=("event", "wall"),
        default="event",
        help="the quick check's worker clock: event (a past day is a backfill) or wall",
    )
    parser.add_argument("--keep", action="store_true", help="keep the store runs' directory")
    args = parser.parse_args()
    if args.large:
        report(run(args.large, args.small, args.due))
    store_orders = [int(n) for n in args.store_orders.split(",") if n.strip()]
    if store_orders or args.quick_orders:
        import bench_store

        bench_store.run(store_orders, args.quick_orders, args.keep, args.quick_clock)


if __name__ == "__main__":
    main()
