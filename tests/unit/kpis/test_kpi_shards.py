"""The KPI state's layout (``engine/kpi.py``): a payment's state on its order's shard, one KPI
shard per hour ``g:kpis/<start>`` merging contributions per item, the earlier ``g:kpis``
migrated, and the same records as before on a simulated day."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from orderwatch.engine import Engine, atomic, derived, kpi
from orderwatch.engine.state import KPIS, KpiShard, OrderShard, Payment
from orderwatch.events.codec import decode_event
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator, write_file
from tests.factories import (
    created,
    paid,
    payment_failed,
    ts,
)
from tests.unit.kpis.test_kpis import kpis

#: the records main's single ``g:kpis`` (payments counted there, a day of them kept) published
#: for this simulated day, before the redesign: ``SimConfig(seed=3, orders=400,
#: anomaly_rate=0.05)``, replayed until three days after its last event
GOLDEN = Path(__file__).with_name("simulated_day_kpis.jsonl")


def at(hhmm: str) -> float:
    return datetime.fromisoformat(ts(hhmm)).timestamp()


def records(events: list[dict[str, Any]], until: str) -> list[tuple[Any, ...]]:
    rows = kpis(events, until)
    return [
        (
            r["kpi"],
            r["window_start"][11:16],
            r["method"] or r["warehouse_id"] or r["carrier"],
            r["numerator"],
            r["denominator"],
        )
        for r in rows
    ]


def test_a_failure_then_a_success_in_the_hour_counts_once_as_a_success() -> None:
    events = [
        payment_failed("O1", "10:05", payment_id="P1"),  # no method: "unknown" so far
        paid("O1", "10:07", payment_id="P1", method="card"),  # upgraded, not added
        paid("O1", "10:08", payment_id="P1", method="card"),  # a re-callback: nothing sent
    ]
    assert records(events, "11:02") == [("payment_success_rate", "10:00", "card", 1, 1)]


def test_a_late_callback_after_publication_is_not_counted_again() -> None:
    """P1's hour (10:00) is published at 11:01 with P1 failed; its success read at 11:20 is
    neither counted in 10:00 (published) nor in 11:00 (P1's hour is its first event's): the
    order's shard knows the payment."""
    events = [
        created("O1", "10:00"),
        payment_failed("O1", "10:05", payment_id="P1"),
        paid("O2", "11:10", payment_id="P2", method="card"),
        paid("O1", "11:20", payment_id="P1", method="card"),
    ]
    assert records(events, "12:02") == [
        ("payment_success_rate", "10:00", "unknown", 0, 1),
        ("payment_success_rate", "11:00", "card", 1, 1),
    ]


def test_orphan_payments_are_counted_on_the_shard_they_make() -> None:
    """A payment whose order was never created makes the order's shard (as every order event
    does) and is counted, as it was when payments went to ``g:kpis``."""
    engine = Engine(load_catalog())
    for data in (paid("O9", "10:05", payment_id="P9", method="card"),):
        engine.step(decode_event(orjson.dumps(data)), at("10:05"))
    shard = engine.shards["o:O9"]
    assert isinstance(shard, OrderShard) and shard.created_eid is None
    assert shard.pay_kpi == ("P9", at("10:00"), "card", 1)
    engine.sweep(at("11:01") + 1)
    [record] = engine.take_kpis()
    assert (record.method, record.numerator, record.denominator) == ("card", 1, 1)


def contribution(item: str, dim: str, hit: int, now: float) -> derived.Contribution:
    return derived.Contribution(
        event_id=f"orderwatch.kpi|payment_success_rate|{item}|{dim}|{hit}",
        kpi="payment_success_rate",
        window_start=at("10:00"),
        dimension=dim,
        item=item,
        hit=hit,
        occurred_ts=now,
    )


def test_a_contribution_delivered_twice_or_out_of_order_counts_once() -> None:
    """Contributions arrive at least once and in any order: an item is merged, hit only goes
    0 -> 1 and the dimension only from unknown to a method."""
    engine = Engine(load_catalog())
    now = at("10:30")
    first = contribution("P1", "unknown", 0, now)
    upgrade = contribution("P1", "card", 1, now)
    for c in (first, first, upgrade, first, upgrade, contribution("P2", "card", 0, now)):
        engine.step(c, now)  # type: ignore[arg-type]
    shard = engine.shards[kpi.hour_key(at("10:00"))]
    assert isinstance(shard, KpiShard) and shard.key == f"g:kpis/{int(at('10:00'))}"
    assert shard.windows["payment_success_rate"] == {"P1": ["card", 1], "P2": ["card", 0]}
    engine.sweep(at("11:01") + 1)
    [record] = engine.take_kpis()
    assert (record.method, record.numerator, record.denominator) == ("card", 1, 2)
    # after publication the hour's shard keeps only closed_until and drops what comes
    engine.step(contribution("P3", "card", 1, at("11:05")), at("11:05"))  # type: ignore[arg-type]
    engine.sweep(at("12:05"))
    assert engine.take_kpis() == [] and shard.windows == {}
    # and an hour whose close passed with no shard is not opened again
    late = contribution("P4", "card", 1, at("12:10"))
    engine.step(late, at("12:10"))  # type: ignore[arg-type]
    engine.sweep(at("13:05"))
    assert engine.take_kpis() == []


def test_payments_no_longer_reach_g_kpis() -> None:
    event = paid("O1", "10:05", payment_id="P1")
    assert KPIS not in Engine.route(decode_event(orjson.dumps(event)))


def legacy_kpis() -> dict[str, Any]:
    """A ``g:kpis`` as the earlier layout wrote it at 10:30: an open 10:00 hour of payments
    (P1 failed without a method, P2 succeeded), P0 of the published 09:00 hour kept against
    late callbacks, and an on-time shipment in the window of its deadline (12:00)."""
    h9, h10, h12 = at("09:00"), at("10:00"), at("12:00")
    return {
        "v": 2,
        "key": KPIS,
        "at": at("10:30"),
        "dl": {f"kpi|{h10}": h10 + 3660, f"kpi|{h12}": h12 + 3660, "evict": at("10:30") + 1e6},
        "windows": {f"on_time_shipment_rate|{h12}": {"O7": ["WH-A", 1]}},
        "payments": {"P0": [h9, "card", 1, True], "P1": [h10, None, 0], "P2": [h10, "card", 1]},
        "closed_until": {k: h10 for k in (kpi.PAY, kpi.SHIP, kpi.DELIVERY)},
    }


def test_an_old_layout_g_kpis_is_migrated_and_its_open_hours_still_counted() -> None:
    engine = Engine(load_catalog())
    engine.restore(KPIS, legacy_kpis())
    # O0 as the earlier layout left it: P0 succeeded at 09:10, no payment KPI state
    o0 = OrderShard("o:O0", payments={"P0": Payment("10.00", "CNY", "e0", at("09:10"))})
    engine.restore("o:O0", orjson.loads(orjson.dumps(o0.to_dict())))
    old = engine.shards[KPIS]
    assert isinstance(old, KpiShard) and "kpi|migrate" in old.timers
    for data in (
        paid("O1", "10:40", payment_id="P1", method="wallet"),  # P1 succeeds: one payment
        paid("O3", "10:41", payment_id="P3", method="card"),  # a new one
        paid("O0", "10:42", payment_id="P0", method="card"),  # a late callback of 09:00's
    ):
        engine.step(decode_event(orjson.dumps(data)), at(data["occurred_at"][11:16]))
    # migrated by the first sweep: nothing of the earlier layout is left but closed_until
    assert old.windows == {} and old.payments == {} and set(old.timers) == set()
    assert "payments" not in old.to_dict()
    engine.sweep(at("13:02"))
    got = [
        (r.kpi, r.window_start.hour, r.method or r.warehouse_id, r.numerator, r.denominator)
        for r in engine.take_kpis()
    ]
    assert got == [
        ("payment_success_rate", 10, "card", 2, 2),  # P2 migrated, P3 new
        ("payment_success_rate", 10, "wallet", 1, 1),  # P1 migrated, then its success
        ("on_time_shipment_rate", 12, "WH-A", 1, 1),  # O7 migrated to its hour
    ]
    # P0's late callback (10:42) is not counted again: its order's shard knew its success
    # (09:10) from before the upgrade, so its hour is 09:00, published
    assert engine.shards["o:O0"].pay_kpi == ("P0", at("09:00"), "card", 1)  # type: ignore[attr-defined]


def test_replay_gives_the_records_of_the_earlier_layout_on_a_simulated_day(tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl"
    write_file(Simulator(SimConfig(seed=3, orders=400, anomaly_rate=0.05)), path)
    lines = path.read_bytes().splitlines(keepends=True)
    last = max(orjson.loads(line)["occurred_at"] for line in lines)
    until = datetime.fromisoformat(last) + timedelta(days=3)
    out = io.BytesIO()
    replay(lines, Engine(load_catalog()), io.BytesIO(), io.StringIO(), until, kpis=out)
    assert out.getvalue() == GOLDEN.read_bytes()


def test_atomic_replay_steps_do_not_pile_up_an_hours_undo_log() -> None:
    """In replay an hour's KPI shard is reached only by the orders' sends, inside their steps:
    its undo log is cleared when no open save holds it, so it keeps one step's writes, not
    the hour's (a failed step still takes its writes back: ``tests/unit/test_atomic.py``)."""
    engine = Engine(load_catalog())
    atomic.guard(engine, lambda *_: None)
    for i in range(50):
        data = paid(f"O{i}", f"10:{i:02d}", payment_id=f"P{i}", method="card")
        event = decode_event(orjson.dumps(data))
        atomic.step(engine, event, event.occurred_ts, then=list)
    shard = engine.shards[kpi.hour_key(at("10:00"))]
    assert isinstance(shard, KpiShard) and len(shard.windows["payment_success_rate"]) == 50
    assert len(atomic._track(shard)) <= 2  # the last step's writes
