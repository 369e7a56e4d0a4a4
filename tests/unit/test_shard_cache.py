"""The bounded shard cache, the shard format version and the engine over a store.

An engine over a ``ShardCache`` with a tiny capacity must give exactly what an engine over a
plain dict gives for the same day (the cache only moves shards between RAM and the store), and
the cache must never drop a shard changed since the last write-back.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from orderwatch.engine import Engine
from orderwatch.engine.cache import MIN_CAPACITY, NEW_SHARD_BYTES, ShardCache, decode_shard
from orderwatch.engine.state import (
    FORMAT_VERSION,
    ORDER,
    OrderShard,
    StateFormatError,
    format_version,
    shard_from_dict,
)
from orderwatch.events.inbound import EVENT_ADAPTER
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator


def stored(shard: OrderShard) -> bytes:
    return orjson.dumps(shard.to_dict())


def test_a_shard_carries_its_format_version_and_old_data_reads_as_version_1() -> None:
    shard = OrderShard(ORDER + "O1")
    data = shard.to_dict()
    assert data["v"] == FORMAT_VERSION
    old = {k: v for k, v in data.items() if k != "v"}
    assert format_version(old) == 1
    assert shard_from_dict(old).to_dict() == data


@pytest.mark.parametrize(
    "data",
    [
        {"v": FORMAT_VERSION + 1, "key": "o:O1"},
        {"v": "1", "key": "o:O1"},
        {"v": 0, "key": "o:O1"},
        {"key": "x:unknown-kind"},
        [1, 2],
        {"no": "key"},
    ],
)
def test_a_shard_of_an_unknown_format_is_refused(data: Any) -> None:
    with pytest.raises(StateFormatError):
        shard_from_dict(data)


def test_a_value_under_the_wrong_key_or_not_json_is_refused() -> None:
    with pytest.raises(StateFormatError, match="is shard"):
        decode_shard("o:O2", stored(OrderShard("o:O1")))
    with pytest.raises(StateFormatError, match="not JSON"):
        decode_shard("o:O1", b"\x00garbage")


def test_the_cache_loads_on_demand_counts_and_stays_bounded() -> None:
    store = {f"o:O{i}": stored(OrderShard(f"o:O{i}")) for i in range(40)}
    reads: list[str] = []

    def load(key: str) -> bytes | None:
        reads.append(key)
        return store.get(key)

    cache = ShardCache(load, capacity=16, pinned=set())
    for i in range(40):
        assert cache.get(f"o:O{i}").key == f"o:O{i}"
    assert len(cache) == 16
    assert cache.get("o:O39") is not None  # resident: no read
    assert reads.count("o:O39") == 1
    assert cache.get("o:O0") is not None  # dropped long ago: read again
    assert reads.count("o:O0") == 2
    assert cache.get("o:missing") is None
    assert "o:missing" not in cache
    assert (cache.hits, cache.misses, cache.loads) == (1, 43, 41)
    with pytest.raises(ValueError, match="at least"):
        ShardCache(load, capacity=2, pinned=set())


def test_a_dirty_shard_is_never_dropped_and_a_deletion_hides_the_stored_value() -> None:
    store = {"o:A": stored(OrderShard("o:A"))}
    dirty: set[str] = set()
    cache = ShardCache(store.get, capacity=16, pinned=dirty)
    a = cache["o:A"]
    a.last_at = 5.0  # changed in memory, not written back yet
    dirty.add("o:A")
    for i in range(40):
        cache[f"o:B{i:02d}"] = OrderShard(f"o:B{i:02d}")
    assert len(cache) == 17, "the 16 most recent and the changed one"
    assert cache.get("o:A") is a, "a changed shard stays until written back"
    del cache["o:A"]
    assert cache.get("o:A") is None, "deleted in memory: the stored value is stale"
    dirty.clear()
    del store["o:A"]  # the shell writes the deletion, then tells the cache
    cache.flushed()
    assert cache.get("o:A") is None


def test_a_byte_budget_bounds_the_cache_by_the_stored_sizes() -> None:
    big = {f"o:B{i:02d}": stored(OrderShard(f"o:B{i:02d}")) + b" " * 1_000 for i in range(40)}
    size = len(big["o:B00"])
    dirty: set[str] = set()
    cache = ShardCache(big.get, capacity=1_000, pinned=dirty, budget=20 * size)
    for i in range(40):
        cache.get(f"o:B{i:02d}")
    assert len(cache) == 20 and cache.bytes == 20 * size, "the count alone would keep 40"
    assert cache.evictions == 20 and not cache.resident("o:B00") and cache.resident("o:B39")
    # a shard made in memory counts NEW_SHARD_BYTES until its write-back tells its size
    cache["o:N"] = OrderShard("o:N")
    dirty.add("o:N")
    assert cache.sizes["o:N"] == NEW_SHARD_BYTES
    cache.sized("o:N", 5 * size)
    cache.sized("o:elsewhere", 10**9)  # not in memory: no estimate to correct
    dirty.clear()
    cache.flushed()
    assert cache.bytes <= 20 * size and cache.resident("o:N")
    assert cache.bytes == sum(cache.sizes.values()) == sum(cache.sizes[k] for k in cache), (
        "every shard in memory counted once"
    )
    del cache["o:N"]
    assert cache.bytes == sum(cache.sizes.values()) and "o:N" not in cache.sizes
    # never below MIN_CAPACITY shards, whatever their size
    tiny = ShardCache(big.get, capacity=1_000, pinned=set(), budget=1)
    for i in range(40):
        tiny.get(f"o:B{i:02d}")
    assert len(tiny) == MIN_CAPACITY


def day(orders: int) -> list[Any]:
    sim = Simulator(SimConfig(seed=5, orders=orders, anomaly_rate=0.3))
    return [EVENT_ADAPTER.validate_python(e) for e in sim.events()]


@pytest.mark.parametrize("budget", [0, 4_000])
def test_an_engine_over_a_tiny_cache_gives_what_an_engine_over_a_dict_gives(budget: int) -> None:
    events = day(60)
    plain = Engine(load_catalog())
    cached = Engine(load_catalog())
    store: dict[str, bytes] = {}
    # 4,000 B: a handful of shards, the byte bound alone evicts
    cache = cached.use_store(
        lambda key: store.get(key), capacity=16 if not budget else 1_000, budget=budget
    )
    out_plain, out_cached = [], []
    for n, event in enumerate(events):
        out_plain += plain.step(event, event.occurred_ts)
        out_cached += cached.step(event, event.occurred_ts)
        if n % 50 == 0:  # a commit: write back what changed, as the shell does
            for key, data in cached.take_dirty().items():
                if data is None:
                    store.pop(key, None)
                else:
                    store[key] = orjson.dumps(data)
                    cache.sized(key, len(store[key]))  # as the worker's writer does
            cache.flushed()
    end = events[-1].occurred_ts + 30 * 86400
    out_plain += plain.sweep(end)
    out_cached += cached.sweep(end)
    assert [e.model_dump() for e in out_cached] == [e.model_dump() for e in out_plain]
    assert cache.loads > 0 and len(cache) <= 16 + len(cached.dirty)
    if budget:
        assert cache.evictions > 0 and cache.bytes == sum(cache.sizes.values())


def test_stored_deadlines_indexed_without_the_shards_fire_when_due() -> None:
    events = day(30)
    live = Engine(load_catalog())
    for event in events:
        live.step(event, event.occurred_ts)
    store = {k: orjson.dumps(s.to_dict()) for k, s in live.shards.items()}
    at = events[-1].occurred_ts + 30 * 86400
    expected = [e.model_dump() for e in live.sweep(at)]

    restored = Engine(load_catalog())
    cache = restored.use_store(store.get, capacity=16)
    restored.index(
        (due, key, name)
        for key, value in store.items()
        for name, due in orjson.loads(value).get("dl", {}).items()
    )
    assert len(cache) == 0, "nothing loaded to index"
    assert sorted(map(repr, (e.model_dump() for e in restored.sweep(at)))) == sorted(
        map(repr, expected)
    )
