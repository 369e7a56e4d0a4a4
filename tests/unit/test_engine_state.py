"""The compact shard representation (shared empty ``open``, window entries as tuples) is internal.

What a shard serializes to (the changelog value) and what an engine restored from it does next
must not depend on it: these tests pin both, and that the shared empty mapping refuses writes.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from orderwatch.engine import Engine
from orderwatch.engine.state import (
    NO_TIMERS,
    NOTHING_OPEN,
    WindowShard,
    new_shard,
    shard_from_dict,
)
from orderwatch.events.codec import decode_event
from orderwatch.rulefiles import load_catalog
from tests.factories import address, created, logistics, paid, status, ts


def _at(event: dict[str, Any]) -> float:
    return decode_event(orjson.dumps(event)).occurred_ts


def _feed(engine: Engine, events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    out = []
    for e in events:
        ev = decode_event(orjson.dumps(e))
        out += [(x.rule_id, x.subject, x.state) for x in engine.step(ev, ev.occurred_ts)]
    return out


def _day() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Five new-account orders at one address, so windows fill; one order paid, never shipped."""
    same = address(line1="科技园南路268号13室")
    first = [
        created(
            f"O{i}",
            f"10:0{i}",
            customer_id=f"C{i}",
            shipping_address=same,
            account_created_at=ts("09:00"),
        )
        for i in range(5)
    ]
    first += [paid("O0", "10:10"), status("O0", "paid", "10:11")]
    later = [logistics("shipped", "O1", "11:00"), status("O2", "cancelled", "11:05")]
    return first, later


def test_shards_round_trip_through_their_serialized_form() -> None:
    first, later = _day()
    live = Engine(load_catalog())
    raised = _feed(live, first)
    assert raised, "the day raises something (fraud windows, at least)"
    dirty = live.take_dirty()
    windows = [d for d in dirty.values() if d is not None and "entries" in d]
    assert windows and all(isinstance(e, list) for d in windows for e in d["entries"])
    restored = Engine(load_catalog())
    for key, data in dirty.items():
        assert data is not None
        # through JSON, as the changelog stores it
        restored.restore(key, orjson.loads(orjson.dumps(data)))
    for key, shard in live.shards.items():
        assert restored.shards[key].to_dict() == shard.to_dict()
    assert _feed(restored, later) == _feed(live, later)
    end = _at(later[-1]) + 10 * 86400
    assert [(x.rule_id, x.subject, x.state) for x in restored.sweep(end)] == [
        (x.rule_id, x.subject, x.state) for x in live.sweep(end)
    ]


def test_window_entries_are_tuples_in_memory_and_lists_on_the_wire() -> None:
    shard = new_shard("a:0123456789abcdef")
    assert isinstance(shard, WindowShard)
    shard.entries = ((1.0, "O1", "C1", "E1"),)
    data = orjson.loads(orjson.dumps(shard.to_dict()))
    assert data["entries"] == [[1.0, "O1", "C1", "E1"]]
    back = shard_from_dict(data)
    assert isinstance(back, WindowShard)
    assert back.entries == ((1.0, "O1", "C1", "E1"),)


def test_the_shared_empty_open_mapping_refuses_writes() -> None:
    shard = new_shard("o:O1")
    assert shard.open is NOTHING_OPEN
    with pytest.raises(TypeError):
        shard.open["x|O1"] = None  # type: ignore[assignment]
    with pytest.raises(TypeError):
        shard.open.update({})
    assert len(NOTHING_OPEN) == 0


def test_eviction_is_a_deadline_to_readers_but_needs_no_timer_dict() -> None:
    first, _ = _day()
    engine = Engine(load_catalog())
    _feed(engine, first)
    window = next(s for s in engine.shards.values() if isinstance(s, WindowShard))
    assert window.timers is NO_TIMERS
    assert window.evict_at is not None
    assert window.deadlines == {"evict": window.evict_at}
    assert window.to_dict()["dl"] == {"evict": window.evict_at}
    paid_order = engine.shards["o:O0"]
    assert "logistics.not_shipped" in paid_order.deadlines
    assert set(paid_order.deadlines) == {*paid_order.timers, "evict"}
