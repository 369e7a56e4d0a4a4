"""What counting command replies costs the worker's engine (``agents/telemetry.CountingEngine``).

The worker builds a ``CountingEngine`` (an ``Engine`` that notes each command's type so its reply
can be counted by type and result). It adds one type test per event to ``step``. This runs the
same pre-decoded simulated traffic, with one command per 50 events, through both engines in
alternating rounds on one core and prints events/s of each and their ratio (the goal: >= 0.97).
Absolute figures move with the machine's load; the ratio is measured in one run.

    .venv/bin/python bench/bench_counting_engine.py [--orders 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from orderwatch.agents.telemetry import Telemetry
from orderwatch.engine import Engine
from orderwatch.events.codec import decode_event
from orderwatch.metrics import Metrics
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator, write_file


def traffic(orders: int) -> list[Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "day.jsonl"
        write_file(Simulator(SimConfig(seed=1, orders=orders, anomaly_rate=0.03)), path, 0.0)
        raw = path.read_bytes().splitlines()
    events = [decode_event(line) for line in raw]
    mixed: list[Any] = []
    for i, event in enumerate(events):
        mixed.append(event)
        if i % 50 == 49:  # a command for an exception nobody raised: full check path, a reply
            mixed.append(
                decode_event(
                    orjson.dumps(
                        {
                            "event_id": f"cmd-{i}",
                            "type": "command.acknowledge",
                            "occurred_at": event.occurred_at.isoformat(),
                            "source": "bench",
                            "exception_id": f"ex-{i}",
                            "rule_id": "payment.paid_not_updated",
                            "subject": getattr(event, "order_id", None) or "O-1",
                            "actor": "bench",
                        }
                    )
                )
            )
    return mixed


def run(engine: Engine, events: list[Any]) -> float:
    gc.collect()
    started = time.perf_counter()
    for event in events:
        engine.step(event, event.occurred_ts)
        if engine.replies:
            engine.take_replies()
    return len(events) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    catalog = load_catalog()
    events = traffic(args.orders)
    telemetry = Telemetry(Metrics(), wall_clock=False)
    plain: list[float] = []
    counting: list[float] = []
    for _ in range(args.rounds):
        plain.append(run(Engine(catalog, track_dirty=False), events))
        counting.append(run(telemetry.engine(catalog, track_dirty=False), events))
    best_plain, best_counting = max(plain), max(counting)
    print(f"events (with commands): {len(events)}")
    print(f"Engine          best of {args.rounds}: {best_plain:10,.0f} events/s")
    print(f"CountingEngine  best of {args.rounds}: {best_counting:10,.0f} events/s")
    print(f"ratio counting/plain: {best_counting / best_plain:.3f}  [goal >= 0.97]")


if __name__ == "__main__":
    main()
