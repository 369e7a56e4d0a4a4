"""Bytes per open and per finished order, serialized (the changelog / RocksDB value) and in RAM.

    .venv/bin/python bench/state_sizes.py [--orders 5000]

A simulated day (3 % anomalies) through the engine, then every order shard is classed: finished
(delivered, closed or cancelled, nothing open) or open (anything else), and measured: its JSON
value as stored (and zlib-compressed, as a rough stand-in for RocksDB's block compression), and
its deep size in memory (the shard object, its dicts, lists, sets, strings and floats; the shared
empty mappings, facts tuples and interned strings are not counted), as the engine built it and
as read back from its stored value (the RocksDB worker's cache). Finished orders are compacted
(``engine.orders.compact``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import zlib
from typing import Any

import orjson

from orderwatch.engine import Engine
from orderwatch.engine.state import (
    _SHARED_FACTS,
    NO_TIMERS,
    NOTHING_OPEN,
    ORDER,
    OrderShard,
    shard_from_dict,
)
from orderwatch.events.inbound import EVENT_ADAPTER
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator

FINAL = {"delivered", "closed", "cancelled", "completed"}


def _interned(text: str) -> bool:
    """Whether ``text`` is the interned copy (shared by every order holding the value)."""
    return sys.intern((text + "\0")[:-1]) is text


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and what it references; the singletons and tuples every order shares
    (empty mappings, the facts tuples of ``state.share_facts``, interned strings) are not
    counted: they are paid once per process, not per order."""
    seen = set() if seen is None else seen
    if id(obj) in seen or obj is NOTHING_OPEN or obj is NO_TIMERS or obj is None:
        return 0
    if type(obj) is str and _interned(obj):
        return 0
    if type(obj) is tuple and _SHARED_FACTS.get(obj) is obj:
        return 0
    if isinstance(obj, bool | int) and -5 <= int(obj) <= 256:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_size(v, seen) for v in obj)
    elif hasattr(obj, "__slots__"):
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    size += deep_size(getattr(obj, name), seen)
    return size


def finished(shard: OrderShard) -> bool:
    done = shard.delivered_at is not None or shard.status in FINAL
    return done and not shard.open


def measure(orders: int) -> dict[str, dict[str, float]]:
    engine = Engine(load_catalog())
    sim = Simulator(SimConfig(seed=3, orders=orders, anomaly_rate=0.03))
    last = 0.0
    for raw in sim.events():
        event = EVENT_ADAPTER.validate_python(raw)
        last = max(last, event.occurred_ts)
        engine.step(event, event.occurred_ts)
    engine.sweep(last + 1)
    out: dict[str, dict[str, float]] = {}
    for kind in ("open", "finished"):
        shards = [
            s
            for k, s in engine.shards.items()
            if k.startswith(ORDER)
            and isinstance(s, OrderShard)
            and (finished(s) if kind == "finished" else not finished(s))
        ]
        if not shards:
            continue
        values = [orjson.dumps(s.to_dict()) for s in shards]
        out[kind] = {
            "count": len(shards),
            "json": statistics.mean(len(v) for v in values),
            "zlib": statistics.mean(len(zlib.compress(v)) for v in values),
            "ram": statistics.mean(deep_size(s) for s in shards),
            # as the RocksDB worker holds it: read back from its stored value
            "loaded": statistics.mean(deep_size(shard_from_dict(orjson.loads(v))) for v in values),
        }
    return out


def report(sizes: dict[str, dict[str, float]]) -> None:
    for kind, f in sizes.items():
        print(
            f"{kind} orders ({f['count']:,.0f}): {f['json']:.0f} B stored as JSON "
            f"({f['zlib']:.0f} B compressed alone), {f['ram']:.0f} B in RAM as built, "
            f"{f['loaded']:.0f} B in RAM when read back from the store"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=5000)
    report(measure(parser.parse_args().orders))


if __name__ == "__main__":
    main()
