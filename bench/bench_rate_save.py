"""What saving the payment-rate shard costs an atomic step (issue 13), on a simulated day.

Runs the first ``--events`` events of a JSONL file through ``engine.atomic.step`` as replay
does, and prints the engine time per event and the time spent saving each kind of shard
(``atomic._save_shard``, timed by a wrapper). Run it with another checkout's ``src`` on
``PYTHONPATH`` to compare, interleaved (the machine is shared: compare ratios, not rates):

    orderwatch simulate --to-file day.jsonl --orders 55000 --seed 3
    PYTHONPATH=base/src .venv/bin/python bench/bench_rate_save.py day.jsonl
    .venv/bin/python bench/bench_rate_save.py day.jsonl --compare-json

``--compare-json``: also times, on the rate shard as it is every 20,000 events, the earlier
save (its changelog JSON without timers and waiting events) against this checkout's, in one
process.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from orderwatch.engine import Engine, ReplayClock, atomic
from orderwatch.engine.state import NO_TIMERS
from orderwatch.events.codec import decode_event
from orderwatch.rulefiles import load_catalog


def _json_save(shard: Any) -> bytes:
    """The rate shard's save before issue 13: its changelog form without its journaled dicts."""
    parked, timers = shard.parked, shard.timers
    shard.parked, shard.timers = None, NO_TIMERS
    try:
        return orjson.dumps(shard.to_dict())
    finally:
        shard.parked, shard.timers = parked, timers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--compare-json", action="store_true")
    args = parser.parse_args()
    with args.path.open("rb") as f:
        events = [decode_event(line) for line in itertools.islice(f, args.events)]
    engine = Engine(load_catalog())
    atomic.guard(engine, lambda *_: None)
    clock = ReplayClock()
    saving: dict[str, float] = defaultdict(float)
    save = atomic._save_shard

    def timed(shard: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return save(shard)
        finally:
            saving[type(shard).__name__] += time.perf_counter() - t0

    atomic._save_shard = timed
    compared: list[tuple[float, float, int]] = []
    started = time.perf_counter()
    for i, event in enumerate(events, 1):
        atomic.step(engine, event, clock.observe(event.occurred_ts), then=list)
        if args.compare_json and i % 20_000 == 0 and "g:rates" in engine.shards:
            t0 = time.perf_counter()
            compared.append(
                (*_compare(engine.shards["g:rates"]), len(engine.shards["g:rates"].open))
            )
            started += time.perf_counter() - t0  # not the engine's time
    elapsed = time.perf_counter() - started
    print(f"events {len(events)}  engine+atomic {elapsed / len(events) * 1e6:.2f} µs/event")
    for kind, spent in sorted(saving.items(), key=lambda kv: -kv[1]):
        print(f"  saving {kind:<12} {spent / elapsed:6.1%} of the time, {spent:.2f} s")
    if compared:
        old = sum(c[0] for c in compared) / len(compared)
        new = sum(c[1] for c in compared) / len(compared)
        opened = [c[2] for c in compared]
        print(
            f"rate shard save, same shard states ({len(compared)}, open {min(opened)}-"
            f"{max(opened)}): JSON {old * 1e6:.1f} µs, kept {new * 1e6:.2f} µs, "
            f"ratio {old / new:.1f}x"
        )


def _compare(shard: Any, rounds: int = 200) -> tuple[float, float]:
    """Per save: the JSON form vs ``atomic._RateKept`` (outside a step: no notes)."""
    t0 = time.perf_counter()
    for _ in range(rounds):
        _json_save(shard)
    t1 = time.perf_counter()
    kept = getattr(atomic, "_RateKept", None)
    for _ in range(rounds):
        if kept is not None:
            kept(shard)
    t2 = time.perf_counter()
    return (t1 - t0) / rounds, (t2 - t1) / rounds


if __name__ == "__main__":
    main()
