"""The RocksDB timer index (agents/store.py) and the engine reading it a chunk at a time.

The index keys sort as the due times do; every write batch keeps one index entry per stored
shard at its earliest deadline (the old one deleted, the new one put, whatever the order of
writes); and an engine whose stored deadlines come from the index in small chunks fires exactly
what an engine holding every shard fires, in the same order.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from rocksdict import Options, Rdict

from orderwatch.agents import store
from orderwatch.engine import Engine
from orderwatch.events.inbound import EVENT_ADAPTER
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator


@pytest.fixture
def db(tmp_path: Path) -> Any:
    rdict = Rdict(str(tmp_path / "p.db"), options=Options(raw_mode=True))
    yield rdict
    rdict.close()


def index(db: Any) -> list[tuple[float, str]]:
    entries, rest = store.read_timers(db, store.TIMER_PREFIX, 10**9)
    assert rest is None
    return entries


def test_timer_keys_sort_as_their_due_times_and_read_back_exactly() -> None:
    rng = random.Random(3)
    dues = [rng.uniform(-1e10, 1e10) for _ in range(500)] + [0.0, 1.5, 1.75e9, 1.75e9 + 1e-6]
    keys = [store.timer_key(d, b"o:X") for d in dues]
    assert [store.parse_timer_key(k)[0] for k in sorted(keys)] == sorted(dues)
    assert store.parse_timer_key(store.timer_key(1.5, "o:ü}\x00".encode())) == (1.5, "o:ü}\x00")


def value(key: str, dl: dict[str, float], **extra: Any) -> bytes:
    return orjson.dumps({"v": 2, "key": key, "at": 1.0, "dl": dl, **extra})


def test_each_write_batch_keeps_the_index_at_each_stored_shard_s_earliest_deadline(
    db: Any,
) -> None:
    assert store.apply_writes(
        db, {b"o:A": value("o:A", {"t1": 10.0, "evict": 99.0})}, offset=5
    ) == {"kind|order": 1, "deadlines": 2}
    store.apply_writes(db, {b"o:B": value("o:B", {"t1": 5.0})})
    assert index(db) == [(5.0, "o:B"), (10.0, "o:A")]
    assert db.get(store.OFFSET_KEY) == b"5"
    # the earliest moved later, then earlier (a name with a brace); a shard deleted
    store.apply_writes(db, {b"o:A": value("o:A", {"t1": 20.0, "evict": 99.0})})
    assert index(db) == [(5.0, "o:B"), (20.0, "o:A")]
    assert store.apply_writes(
        db, {b"o:A": value("o:A", {"t1": 20.0, "park|x}": 7.0}), b"o:B": None}
    ) == {"kind|order": 1, "deadlines": 2}
    assert index(db) == [(7.0, "o:A")]
    assert store.apply_writes(db, {b"o:A": value("o:A", {})})["deadlines"] == 0
    assert index(db) == []
    # values that are no shard (the blacklist's copy, an end mark) add nothing
    store.apply_writes(db, {b"*:0": orjson.dumps({"phone": []}), b"~end": None})
    assert index(db) == []


def test_reading_in_chunks_resumes_where_it_stopped(db: Any) -> None:
    store.apply_writes(
        db, {f"o:{i}".encode(): value(f"o:{i}", {"t": float(i % 7)}) for i in range(50)}
    )
    writer = store.Writer(store=None, changelog="c")
    writer.db = lambda partition: db  # type: ignore[method-assign]
    more = writer.timers(0)
    seen: list[tuple[float, str]] = []
    frontiers = []
    while True:
        chunk, frontier = more()
        seen += chunk
        if frontier is None:
            break
        frontiers.append(frontier)
        assert chunk[-1][0] <= frontier
    assert seen == index(db) and len(seen) == 50
    assert more() == ([], None), "nothing is read twice"


def day(orders: int) -> list[Any]:
    sim = Simulator(SimConfig(seed=11, orders=orders, anomaly_rate=0.3))
    return [EVENT_ADAPTER.validate_python(e) for e in sim.events()]


def test_an_engine_reading_the_index_in_chunks_fires_what_the_whole_state_fires(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = day(40)
    half = len(events) // 2
    whole = Engine(load_catalog())
    for event in events[:half]:
        whole.step(event, event.occurred_ts)
    # what a worker leaves in its store at a flush, then is killed
    store.apply_writes(db, {k.encode(): orjson.dumps(s.to_dict()) for k, s in whole.shards.items()})
    monkeypatch.setattr(store, "TIMER_CHUNK", 7)
    writer = store.Writer(store=None, changelog="c")
    writer.db = lambda partition: db  # type: ignore[method-assign]
    restored = Engine(load_catalog())
    cache = restored.use_store(writer.loader(0), capacity=16)
    assert restored.index_lazily(writer.timers(0)) == 7
    assert len(cache) == 0, "nothing loaded to index"
    out_whole, out_restored = [], []
    for n, event in enumerate(events[half:]):
        out_whole += whole.step(event, event.occurred_ts)
        out_restored += restored.step(event, event.occurred_ts)
        if n % 40 == 0:  # a flush
            for key, data in restored.take_dirty().items():
                writer.write(0, key.encode(), None if data is None else orjson.dumps(data))
            writer.flush()
            cache.flushed()
    end = events[-1].occurred_ts + 30 * 86400
    out_whole += whole.sweep(end)
    out_restored += restored.sweep(end)
    assert [e.model_dump() for e in out_restored] == [e.model_dump() for e in out_whole]
    assert len(out_whole) > 10


def test_the_stored_counts_follow_shards_and_open_exceptions_through_any_writes(db: Any) -> None:
    def op(rule: str, status: str | None = None) -> dict[str, Any]:
        return {"id": "x", "r": rule, **({"st": status} if status else {})}

    store.apply_writes(
        db,
        {
            b"o:A": value("o:A", {}, open=[op("r1"), op("r2", "acked")]),
            b"s:S/W": value("s:S/W", {}),
            b"g:rates": value("g:rates", {}),
            b"g:actions": value("g:actions", {}),
            b"g:actions/O1": value("g:actions/O1", {"evict": 5.0}),
            b"*:0": orjson.dumps({"phone": []}),
        },
    )
    counts = store.apply_writes(db, {b"o:B": value("o:B", {}, open=[op("r1")])})
    assert counts == {
        "kind|order": 2,
        "kind|stock": 1,
        "kind|rates": 2,
        "kind|actions": 1,
        "open|r1|open": 2,
        "open|r2|acked": 1,
        "deadlines": 1,
    }
    counts = store.apply_writes(
        db,
        {
            b"o:A": value("o:A", {"t": 1.0, "evict": 9.0}),
            b"o:B": None,
            b"o:C": None,
            b"g:actions/O1": None,
        },
    )
    assert {k: n for k, n in counts.items() if n} == {
        "kind|order": 1,
        "kind|stock": 1,
        "kind|rates": 2,
        "deadlines": 2,
    }
    assert orjson.loads(db.get(store.COUNTS_KEY)) == counts, "stored with the shards"


def test_a_shard_read_before_its_index_entry_keeps_its_later_deadlines(db: Any) -> None:
    """A shard loaded by an event while its index entry is still unread, then written with an
    earlier deadline: its entry moves behind what the engine has read, so the engine must hold
    the shard's later deadlines itself (at its earliest, from the load)."""
    from orderwatch.engine.core import TIMER_FRONTIER
    from orderwatch.engine.state import Shard

    store.apply_writes(db, {b"f:B": value("f:B", {"evict": 50.0})})
    store.apply_writes(db, {b"f:A": value("f:A", {"evict": 1000.0})})
    writer = store.Writer(store=None, changelog="c")
    writer.db = lambda partition: db  # type: ignore[method-assign]
    engine = Engine(load_catalog())
    cache = engine.use_store(writer.loader(0), capacity=16)
    original = store.TIMER_CHUNK
    store.TIMER_CHUNK = 1
    try:
        assert engine.index_lazily(writer.timers(0)) == 1  # f:B read; f:A is the frontier
    finally:
        store.TIMER_CHUNK = original
    shard = cache["f:A"]
    assert isinstance(shard, Shard)
    engine.schedule(shard, "x", 10.0)
    for key, data in engine.take_dirty().items():
        writer.write(0, key.encode(), orjson.dumps(data))
    writer.flush()
    cache.flushed()
    assert index(db) == [(10.0, "f:A"), (50.0, "f:B")], "the entry moved behind the frontier"
    entries = {(due, key, name) for due, _, key, name in engine._heap}
    assert (1000.0, TIMER_FRONTIER, "") in entries
    assert (1000.0, "f:A", "") in entries, "the eviction at 1000 is still reachable"


def test_the_deadlines_are_read_from_their_slice_whatever_the_key() -> None:
    long_key = "o:" + "x" * 400 + ',"at":1,"dl":{"z":1}'
    for key in ("o:A", long_key):
        with_dl = value(key, {"t": 3.5, "evict": 9.0}, open=[{"id": "e", "dl": {"q": 0.5}}])
        assert store.deadlines_of(with_dl) == {"t": 3.5, "evict": 9.0}
        assert store.earliest(with_dl) == 3.5
        without = orjson.dumps({"v": 2, "key": key, "at": 1.0, "open": [{"dl": {"q": 0.5}}]})
        assert store.deadlines_of(without) == {}
    assert store.deadlines_of(value("o:A", {"park|a}b": 2.0})) == {"park|a}b": 2.0}
    assert store.deadlines_of(orjson.dumps({"key": "o:A", "dl": {"t": 1.0}})) == {"t": 1.0}
    assert store.deadlines_of(b"not json") == {}


def test_the_state_gauges_count_every_stored_deadline_and_action_records_apart(db: Any) -> None:
    """``orderwatch_pending_deadlines`` from the counts record: the deadlines of the shards
    still in the store count, not only those of the shards the cache holds."""
    from prometheus_client import CollectorRegistry

    from orderwatch.agents.telemetry import shard_kind
    from orderwatch.metrics import Metrics

    whole = Engine(load_catalog())
    sim = Simulator(SimConfig(seed=5, orders=60, anomaly_rate=0.3))
    for raw in sim.events():
        event = EVENT_ADAPTER.validate_python(raw)
        whole.step(event, event.occurred_ts)
    store.apply_writes(db, {k.encode(): orjson.dumps(s.to_dict()) for k, s in whole.shards.items()})
    store.apply_writes(db, {b"g:actions/O1": value("g:actions/O1", {"expiry": 3.0, "evict": 9.0})})
    registry = CollectorRegistry()
    writer = store.Writer(store=None, changelog="c", metrics=Metrics(registry))
    writer.db = lambda partition: db  # type: ignore[method-assign]
    cold = Engine(load_catalog())
    cold.use_store(writer.loader(0), capacity=16)  # holds nothing yet
    writer.report({0: cold})
    stored = sum(len(s.deadlines) for s in whole.shards.values()) + 2
    assert stored > 100
    assert registry.get_sample_value("orderwatch_pending_deadlines") == stored
    kinds = {
        kind: registry.get_sample_value("orderwatch_state_shards", {"kind": kind})
        for kind in ("order", "actions", "rates")
    }
    orders = sum(1 for k in whole.shards if k.startswith("o:"))
    records = sum(1 for k in whole.shards if k.startswith("g:actions/"))
    # the rest: g:rates, g:actions, g:kpis and the creation failures' shards (f:)
    rest = sum(1 for k in whole.shards if k[:2] not in ("o:", "s:", "a:", "p:", "c:")) - records
    assert records and rest >= 3
    assert kinds == {"order": orders, "actions": records + 1, "rates": rest}
    assert shard_kind("g:actions/O1") == "actions"
    assert [shard_kind(k) for k in ("g:actions", "g:kpis", "g:rates", "o:1")] == [
        "rates",
        "rates",
        "rates",
        "order",
    ]


def test_the_writer_tells_each_cache_the_stored_size_of_what_it_writes(db: Any) -> None:
    """The byte budget of a shard cache (``ORDERWATCH_SHARD_CACHE_MB``) counts a shard at the
    length the store was given for it, and ``orderwatch_shard_cache_bytes`` reports the sum."""
    from prometheus_client import CollectorRegistry

    from orderwatch.metrics import Metrics

    registry = CollectorRegistry()
    writer = store.Writer(store=None, changelog="c", metrics=Metrics(registry))
    writer.db = lambda partition: db  # type: ignore[method-assign]
    engine = Engine(load_catalog())
    cache = engine.use_store(writer.loader(0), capacity=1_000, budget=10_000)
    writer.engines = {0: engine}
    events = day(20)
    for event in events:
        engine.step(event, event.occurred_ts)
    written = {k: orjson.dumps(v) for k, v in engine.take_dirty().items() if v is not None}
    for key, value in written.items():
        writer.write(0, key.encode(), value)
    writer.flush(0)
    cache.flushed()
    assert all(cache.sizes[k] == len(written[k]) for k in cache.sizes)
    assert cache.bytes == sum(cache.sizes.values()) <= 10_000 < sum(map(len, written.values()))
    writer.report({0: engine})
    assert registry.get_sample_value("orderwatch_shard_cache_bytes") == cache.bytes
