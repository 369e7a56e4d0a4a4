"""An engine step is all or nothing (``engine.atomic``), and replay skips a failing line the way
the worker dead-letters it: reported with its line number, the other lines' exceptions intact."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from orderwatch.engine import Engine, atomic
from orderwatch.engine.state import KpiShard, OrderShard, Payment, RateShard, Shard
from orderwatch.events.codec import decode_event
from orderwatch.events.inbound import InboundEvent
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import blacklist, created, paid, plus, status, to_jsonl

CATALOG = load_catalog()
MARKER = "boom-"


class BoomEngine(Engine):
    """Raises on marker events after applying them: the half-applied case."""

    def _apply(self, shard: Shard, event: InboundEvent, at: float) -> None:
        super()._apply(shard, event, at)
        if event.event_id.startswith(MARKER):
            raise KeyError("13812345678")

    def _apply_blacklist(self, event: InboundEvent) -> None:
        super()._apply_blacklist(event)
        if event.event_id.startswith(MARKER):
            raise RuntimeError("after the blacklist changed")


def ev(data: dict[str, Any]) -> InboundEvent:
    return decode_event(orjson.dumps(data))


def snapshot(engine: Engine) -> dict[str, Any]:
    return {
        "shards": {k: orjson.loads(orjson.dumps(s.to_dict())) for k, s in engine.shards.items()},
        "blacklist": {k: sorted(v) for k, v in engine.blacklist.items()},
        "dirty": set(engine.dirty),
    }


def test_a_failing_step_leaves_every_shard_and_the_blacklist_as_they_were() -> None:
    engine = BoomEngine(CATALOG)
    for data in [created("O1", "10:00"), paid("O1", "10:01"), blacklist("phone", "13900000000")]:
        atomic.step(engine, ev(data), ev(data).occurred_ts, then=list)
    before = snapshot(engine)
    markers = [
        status("O1", "paid", "10:02", event_id=f"{MARKER}1"),  # an existing shard
        created("O2", "10:03", event_id=f"{MARKER}2"),  # new order, address, phone, customer
        blacklist("phone", "13900000001", "10:04", event_id=f"{MARKER}3"),
    ]
    for data in markers:
        with pytest.raises(atomic.StepFailed):
            atomic.step(engine, ev(data), ev(data).occurred_ts, then=list)
        assert snapshot(engine) == before, data["event_id"]
        assert engine.take_output() == [], "no partial output survives"


def test_deadlines_due_before_a_failing_event_still_fire() -> None:
    engine = BoomEngine(CATALOG)
    for data in [created("O1", "10:00"), paid("O1", "10:01")]:
        atomic.step(engine, ev(data), ev(data).occurred_ts, then=list)
    late = status("O9", "paid", plus("10:01", hours=2), event_id=f"{MARKER}9")
    with pytest.raises(atomic.StepFailed) as failed:
        atomic.step(engine, ev(late), ev(late).occurred_ts, then=list)
    assert {e.rule_id for e in failed.value.due} == {"payment.paid_not_updated"}
    assert isinstance(failed.value.error, KeyError)


def test_a_copy_is_deep_enough_that_changes_to_the_shard_do_not_reach_it() -> None:
    shard = OrderShard("o:1", payments={"P1": Payment("1.00")}, status_log=[[1.0, "paid"]])
    shard.timers = {"t": 5.0}
    saved = atomic._copy(shard)
    shard.payments["P1"].refunded = True
    shard.status_log.append([2.0, "cancelled"])
    shard.timers["u"] = 6.0
    back = saved.build()
    assert back.payments["P1"].refunded is False
    assert back.status_log == [[1.0, "paid"]] and back.timers == {"t": 5.0}


def test_a_shared_shard_is_saved_as_its_changelog_form_with_its_waiting_events() -> None:
    """The rate and KPI shards are saved as JSON plus shallow copies of their timers and
    waiting events; what a failed step built back is the shard before the step."""
    event = ev(paid("O1", "10:01"))
    kpis = KpiShard(
        "g:kpis", windows={"k|0.0": {"O1": ["web", True]}}, payments={"P": [0.0, "c", 1]}
    )
    kpis.timers, kpis.parked, kpis.evict_at = {"park|E1": 5.0}, {"E1": event}, 9.0
    rates = RateShard("g:rates", payments={60.0: [{"P1"}, set()]}, failures={60.0: {"F1"}})
    for shard in (kpis, rates):
        parked_before = dict(shard.parked or {})
        # of a copy: ``to_dict`` turns the shard's own waiting events into JSON in place
        before = orjson.dumps(atomic._copy(shard).build().to_dict())
        saved = atomic._save_shard(shard)
        assert shard.parked is None or shard.parked == parked_before  # put back after the save
        if isinstance(shard, KpiShard):
            shard.windows["k|0.0"]["O1"][1] = False
            shard.windows["k|0.0"]["O2"] = ["app", False]
            shard.timers["park|E2"] = 6.0
            assert shard.parked is not None
            shard.parked.pop("E1")
        else:
            shard.payments[60.0][0].add("P2")
            shard.failures[120.0] = {"F2"}
        back = saved.build()
        assert type(back) is type(shard)
        assert (back.parked or {}) == parked_before
        if back.parked:
            assert back.parked["E1"] is event  # the model itself, not a copy
        assert orjson.dumps(back.to_dict()) == before


def test_replay_reports_a_failing_line_and_gives_the_other_lines_exceptions() -> None:
    events = [created("O1", "10:00"), paid("O1", "10:01"), created("O2", "10:02")]
    events += [paid("O2", "10:03"), status("O1", "paid", "10:30")]
    marked = [*events[:3], status("O2", "paid", "10:04", event_id=f"{MARKER}1"), *events[3:]]

    def run(engine: Engine, lines: list[dict[str, Any]]) -> tuple[bytes, str]:
        out, err = io.BytesIO(), io.StringIO()
        replay(io.BytesIO(to_jsonl(lines)).readlines(), engine, out, err)
        return out.getvalue(), err.getvalue()

    clean, _ = run(Engine(CATALOG), events)
    got, err = run(BoomEngine(CATALOG), marked)
    assert got == clean and clean.count(b"\n") >= 1
    assert err == "line 4: internal_error: KeyError: <11 chars>\n"
