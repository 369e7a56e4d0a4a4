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
from orderwatch.simulation.traffic import SimConfig, Simulator
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
    with pytest.raises(TypeError):
        shard.open |= {}
    with pytest.raises(TypeError):
        shard.timers["x"] = 1.0
    assert len(NOTHING_OPEN) == 0


def test_eviction_is_a_deadline_to_readers_but_needs_no_timer_dict() -> None:
    first, _ = _day()
    engine = Engine(load_catalog())
    _feed(engine, first)
    window = next(s for s in engine.shards.values() if isinstance(s, WindowShard))
    assert window.timers is NO_TIMERS
    assert window.evict_at is not None
    assert window.deadlines == {"evict": window.evict_at}
    assert len(window.deadlines) == 1  # what the metrics walk reads for every shard
    assert window.to_dict()["dl"] == {"evict": window.evict_at}
    paid_order = engine.shards["o:O0"]
    assert "logistics.not_shipped" in paid_order.deadlines
    assert set(paid_order.deadlines) == {*paid_order.timers, "evict"}


def _outputs(events: list[dict[str, Any]], *, lazy: bool) -> list[tuple[str, str, str, str]]:
    """Everything the engine emits, in order, with ``postpone`` on (lazy) or as ``schedule``."""
    engine = Engine(load_catalog())
    if not lazy:
        engine.postpone = engine.schedule  # type: ignore[method-assign]
    out = []
    last = 0.0
    for e in events:
        ev = decode_event(orjson.dumps(e))
        last = max(last, ev.occurred_ts)
        out += engine.step(ev, last)
    out += engine.sweep(last + 30 * 86400)
    return [(x.rule_id, x.subject, x.state, x.exception_id) for x in out]


def test_postponed_deadlines_fire_in_the_order_schedule_would_fire_them() -> None:
    # three orders whose tracking_stale falls due at one instant: A's was postponed to it by a
    # scan after B's was scheduled at it and before D's, so it fires between the two
    events = [
        logistics("shipped", "A", "10:00"),
        logistics("shipped", "B", "11:00"),
        logistics("scanned", "A", "11:00"),
        logistics("shipped", "D", "11:00"),
    ]
    lazy = _outputs(events, lazy=True)
    raised = [s for r, s, state, _ in lazy if r == "logistics.tracking_stale" and state == "raised"]
    assert raised == ["B", "A", "D"]
    assert lazy == _outputs(events, lazy=False)


def test_postpone_changes_nothing_over_a_simulated_day() -> None:
    sim = Simulator(SimConfig(seed=7, orders=400, anomaly_rate=0.2))
    events = list(sim.events())
    assert _outputs(events, lazy=True) == _outputs(events, lazy=False)


def test_an_event_read_ahead_of_the_clock_waits_in_its_shard_across_a_restart() -> None:
    """Parked events are kept as models in memory and as JSON in the changelog: both read back."""
    early = decode_event(orjson.dumps(created("O1", "10:00")))
    ahead = decode_event(orjson.dumps(paid("O1", "10:05")))
    live = Engine(load_catalog(), reorder=True)
    live.step(early, early.occurred_ts)
    live.step(ahead, early.occurred_ts)  # the watermark is still at 10:00: the payment waits
    saved = live.take_dirty()
    order_key = "o:O1"  # (the payment also waits in the global rate window)
    waiting = [k for k, v in saved.items() if v and v.get("parked")]
    assert order_key in waiting
    assert list(saved[order_key]["parked"].values()) == [ahead.model_dump(mode="json")]

    restored = Engine(load_catalog(), reorder=True)
    for key, value in saved.items():
        assert value is not None
        restored.restore(key, orjson.loads(orjson.dumps(value)))
    later = _at(created("O9", "10:30"))
    fired = live.sweep(later)
    assert [e.rule_id for e in fired] == ["payment.paid_not_updated"]
    assert restored.sweep(later) == fired
    assert restored.shards[order_key].to_dict() == live.shards[order_key].to_dict()
    assert live.shards[order_key].parked is None  # read back once the clock passed it
