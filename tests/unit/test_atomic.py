"""An engine step is all or nothing (``engine.atomic``), and replay skips a failing line the way
the worker dead-letters it: reported with its line number, the other lines' exceptions intact."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderwatch.engine import Engine, atomic
from orderwatch.engine.state import OrderShard, Payment, Shard
from orderwatch.events.codec import decode_event
from orderwatch.events.inbound import InboundEvent
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import (
    blacklist,
    command,
    created,
    creation_failed,
    logistics,
    paid,
    payment_failed,
    plus,
    reserved,
    status,
    to_jsonl,
)

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


class SharedBoomEngine(Engine):
    """Raises on marker events once they are applied to the rate shard: after the order took
    them and sent its payment to its hour's KPI shard (a payment routes to ``o:`` and
    ``g:rates``; replay applies the order's contribution to ``g:kpis/<hour>`` at once)."""

    def _apply(self, shard: Shard, event: InboundEvent, at: float) -> None:
        super()._apply(shard, event, at)
        if event.event_id.startswith(MARKER) and shard.key == "g:rates":
            raise KeyError("13812345678")


def shared_state(engine: Engine) -> dict[str, Any]:
    """The shared shards' changelog form, waiting events by id, and their timers."""
    out = {}
    for key in ("g:rates", *sorted(k for k in engine.shards if k.startswith("g:kpis"))):
        shard = engine.shards[key]
        parked = dict(shard.parked or {})
        # of a copy: ``to_dict`` turns the shard's own waiting events into JSON in place
        out[key] = (orjson.loads(orjson.dumps(atomic._copy(shard).build().to_dict())), parked)
    return out


def test_a_failed_step_leaves_the_shared_shards_and_their_waiting_events_as_they_were() -> None:
    """The rate and KPI shards are saved as their JSON form, their timers and waiting events
    by a journal of the step's writes (event-time clock: payments read ahead wait there)."""
    engine = SharedBoomEngine(CATALOG, reorder=True)
    atomic.guard(engine, lambda *_: None)
    now = ev(paid("O0", "10:00")).occurred_ts
    for i in range(1, 4):  # applied at once, then three waiting for the clock
        atomic.step(engine, ev(created(f"O{i}", "09:00")), now, then=list)
        atomic.step(engine, ev(paid(f"O{i}", "09:30", payment_id=f"P{i}")), now, then=list)
        later = paid(f"O{i}", plus("10:00", minutes=i), payment_id=f"Q{i}")
        atomic.step(engine, ev(later), now, then=list)
    before = shared_state(engine)
    assert len(before["g:rates"][1]) == 3 and len(before) == 2  # the rates, the 09:00 hour
    boom = ev(paid("O1", "09:40", payment_id="PX", event_id=f"{MARKER}1"))
    with pytest.raises(atomic.StepFailed):
        atomic.step(engine, boom, now, then=list)
    after = shared_state(engine)
    assert after == before
    for key, (_, parked) in after.items():
        assert all(parked[k] is v for k, v in before[key][1].items())  # the models themselves
    # a waiting marker that fails when the clock reaches it: only it leaves its shards
    late = ev(paid("O2", plus("10:00", minutes=30), payment_id="PY", event_id=f"{MARKER}2"))
    atomic.step(engine, late, now, then=list)
    assert f"{MARKER}2" in (engine.shards["g:rates"].parked or {})
    engine.sweep(ev(paid("O0", "11:00")).occurred_ts)
    assert f"{MARKER}2" not in (engine.shards["g:rates"].parked or {})


def test_a_step_that_only_parks_in_the_shared_shards_is_taken_back_by_their_journals() -> None:
    """Live on event time (``forward``), a payment read ahead of the clock only waits in the
    rate shard (and its order's); if encoding its output fails, its waiting entries and timers
    go."""
    engine = Engine(CATALOG, reorder=True)
    engine.forward = True
    now = ev(paid("O0", "10:00")).occurred_ts
    atomic.step(engine, ev(created("O1", "09:00")), now, then=list)
    atomic.step(engine, ev(paid("O1", "09:30")), now, then=list)
    atomic.step(engine, ev(paid("O1", "10:05", payment_id="Q1")), now, then=list)
    before = shared_state(engine)
    kpis = engine.shards["g:rates"]

    def boom(_: list[Any]) -> None:
        raise RuntimeError("cannot encode")

    ahead = ev(paid("O1", "10:06", payment_id="Q2"))
    with pytest.raises(atomic.StepFailed):
        atomic.step(engine, ahead, now, then=boom)
    assert shared_state(engine) == before
    assert engine.shards["g:rates"] is kpis  # kept: nothing but its journals changed
    assert ahead.event_id not in (kpis.parked or {})
    assert f"park|{ahead.event_id}" not in kpis.timers


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


def kpi_state(engine: Engine) -> dict[str, Any]:
    """The hours' KPI shards' changelog form and the orders' payment KPI state, through JSON
    (their own lists and dicts are compared by value, not by identity)."""
    shards = {k: s.to_dict() for k, s in engine.shards.items() if k.startswith("g:kpis/")}
    orders = {k: s.pay_kpi for k, s in engine.shards.items() if isinstance(s, OrderShard)}
    return orjson.loads(orjson.dumps({**shards, "orders": orders}))  # type: ignore[no-any-return]


def hour(hhmm: str) -> str:
    """The key of the KPI shard of the hour of ``hhmm`` (on the factories' day)."""
    return f"g:kpis/{int(ev(paid('O0', hhmm)).occurred_ts)}"


def kpi_engine() -> Engine:
    """An engine whose KPI shards hold an hour of payments, a published hour and an on-time
    shipment, each step atomic."""
    engine = Engine(CATALOG)
    atomic.guard(engine, lambda *_: None)
    events = [
        created("O1", "09:00"),
        paid("O1", "09:01", payment_id="P1"),
        reserved("O1", "09:02"),
        logistics("shipped", "O1", "09:30"),  # on time: a contribution to the KPI shard
        payment_failed("O2", "10:05", payment_id="P2"),  # no method, not ok
        paid("O3", "10:06", payment_id="P3", method="card"),
    ]
    for data in events:
        atomic.step(engine, ev(data), ev(data).occurred_ts, then=list)
    return engine


def test_a_failed_step_takes_back_its_writes_to_the_kpi_shard() -> None:
    """A KPI shard is not saved whole before a step (it holds an hour's items) but takes back
    the step's own writes: a new payment, a payment's item replaced (its first method, a
    success after a failure). An hour's publication, a deadline, is taken back on its own
    (next test)."""
    engine = kpi_engine()
    kpis = engine.shards[hour("10:00")]
    before = kpi_state(engine)
    assert before[hour("10:00")]["windows"]["payment_success_rate"]["P2"] == ["unknown", 0]
    changed: list[dict[str, Any]] = []

    def boom(_: list[Any]) -> None:
        changed.append(kpi_state(engine))
        raise RuntimeError("cannot encode")

    retry = paid("O2", "10:07", payment_id="P2", method="wallet")  # P2's entry replaced
    new = paid("O4", "10:08", payment_id="P4")  # a new payment and a new window's timer
    for data in (retry, new):
        with pytest.raises(atomic.StepFailed):
            atomic.step(engine, ev(data), ev(data).occurred_ts, then=boom)
        assert changed[-1] != before, "the step changed the shard"
        assert kpi_state(engine) == before, data["payment_id"]
        assert engine.shards[hour("10:00")] is kpis  # kept and taken back, not rebuilt
    assert changed[0][hour("10:00")]["windows"]["payment_success_rate"]["P2"] == ["wallet", 1]
    # replay applies an order's on-time shipment to the KPI shard within the order's step,
    # though the event does not route there: taken back as well
    atomic.step(
        engine, ev(created("O6", "10:00")), ev(created("O6", "10:00")).occurred_ts, then=list
    )
    for data in (paid("O6", "10:01", payment_id="P6"), reserved("O6", "10:02")):
        atomic.step(engine, ev(data), ev(data).occurred_ts, then=list)
    before = kpi_state(engine)
    shipped = logistics("shipped", "O6", "10:30")
    with pytest.raises(atomic.StepFailed):
        atomic.step(engine, ev(shipped), ev(shipped).occurred_ts, then=boom)
    assert any(
        "O6" in items for s in changed[-1].values() for items in s.get("windows", {}).values()
    )
    assert kpi_state(engine) == before
    # and then as it should: the same events applied for good change the shard
    atomic.step(engine, ev(retry), ev(retry).occurred_ts, then=list)
    got = kpi_state(engine)[hour("10:00")]["windows"]["payment_success_rate"]
    assert got["P2"] == ["wallet", 1]


class CloseBoomEngine(Engine):
    """Fails the publication of an hour's KPI records after it changed the KPI shard."""

    def _fire(self, shard: Shard, name: str, due: float, now: float) -> None:
        super()._fire(shard, name, due, now)
        if name.startswith("kpi|"):
            raise RuntimeError("after the hour was published")


def test_a_failed_kpi_deadline_takes_back_its_writes() -> None:
    engine = CloseBoomEngine(CATALOG)
    failed: list[str] = []
    atomic.guard(engine, lambda name, *_: failed.append(name))
    for data in (paid("O1", "09:01", payment_id="P1"), paid("O2", "10:05", payment_id="P2")):
        atomic.step(engine, ev(data), ev(data).occurred_ts, then=list)
    assert failed == ["kpi|" + repr(ev(paid("O1", "09:00")).occurred_ts)]
    before = kpi_state(engine)[hour("10:00")]
    late = ev(paid("O3", "11:30", payment_id="P3"))
    engine.sweep(late.occurred_ts)
    assert failed[1:] == ["kpi|" + repr(ev(paid("O2", "10:00")).occurred_ts)]
    after = kpi_state(engine)[hour("10:00")]
    assert after.pop("dl") == {k: v for k, v in before.pop("dl").items() if k != failed[1]}
    assert after == before  # the hour's windows and closed_until as they were
    assert engine.take_output() == [] and engine.kpi_records == []


def rate_state(engine: Engine) -> Any:
    """The rate shard's changelog form, through JSON (compared by value)."""
    return orjson.loads(orjson.dumps(engine.shards["g:rates"].to_dict()))


class RateBoomEngine(Engine):
    """Fails a payment window's judgement after it raised its exception and dropped the window."""

    def _fire(self, shard: Shard, name: str, due: float, now: float) -> None:
        super()._fire(shard, name, due, now)
        if name.startswith("pay|"):
            raise RuntimeError("after the window was judged")


def test_a_failed_step_takes_back_its_writes_to_the_rate_shards_exceptions() -> None:
    """The rate shard is not saved as its JSON before a step (its windows' ids, its open and
    closed exceptions) but takes back the step's writes: a window's new id, an open
    exception updated in place, a new one, a command's status and reply, a resolution."""
    engine = RateBoomEngine(CATALOG)
    failed: list[str] = []
    atomic.guard(engine, lambda name, *_: failed.append(name))
    rates: list[Shard] = []
    changed: list[Any] = []

    def apply(events: list[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for data in events:
            out += atomic.step(engine, ev(data), ev(data).occurred_ts, then=list)
        rates.append(engine.shards["g:rates"])
        return out

    def boom(_: list[Any]) -> None:
        changed.append(rate_state(engine))
        raise RuntimeError("cannot encode")

    def fail(events: list[dict[str, Any]]) -> None:
        before = rate_state(engine)
        for data in events:
            with pytest.raises(atomic.StepFailed):
                atomic.step(engine, ev(data), ev(data).occurred_ts, then=boom)
            assert changed[-1] != before, f"{data['event_id']} changed the shard"
            assert rate_state(engine) == before, data["event_id"]
            assert engine.shards["g:rates"] is rates[-1]  # kept and taken back, not rebuilt

    # a spike at the tenth failure of the 10:00 window, acknowledged
    out = apply([creation_failed(plus("10:00", seconds=i), event_id=f"F{i}") for i in range(10)])
    [spike] = [e for e in out if e.rule_id == "order.creation_failure_spike"]
    apply([paid("O1", "10:01", payment_id="P1"), command("acknowledge", spike, "10:02")])
    assert rate_state(engine)["open"][0]["st"] == "acknowledged"
    first = [
        creation_failed("10:03", event_id="F10"),  # a failure the open spike covers
        paid("O2", "10:03", payment_id="P2"),  # a window's new payment id
        command("unacknowledge", spike, "10:03"),  # its status and the command's reply
        command("resolve", spike, "10:03", resolution="fixed"),  # moved to the closed ones
    ]
    fail(first)
    assert "F10" in changed[0]["failures"][0][1]
    assert changed[2]["open"][0].get("st") is None  # open again
    assert changed[-1]["closed"][0]["id"] == spike.exception_id
    # nine in the next window: the tenth raises another spike
    apply([creation_failed(plus("10:05", seconds=i), event_id=f"G{i}") for i in range(9)])
    second = [
        creation_failed("10:06", event_id="G9"),  # a new spike
        payment_failed("O3", "10:07", payment_id="P3"),  # a new window
    ]
    fail(second)
    assert len(changed[-2]["open"]) == 2
    # the same events applied for good change the shard (nothing left half-tracked)
    apply([data | {"occurred_at": plus("10:06", seconds=30)} for data in first[2:]] + second)
    after = rate_state(engine)
    assert [o["v"]["failures"] for o in after["open"]] == [10]  # the 10:05 spike
    assert after["closed"][0]["id"] == spike.exception_id
    # a window's judgement that fails: its exception and the window's drop taken back
    apply([payment_failed(f"Q{i}", "10:16", payment_id=f"R{i}") for i in range(20)])
    before = rate_state(engine)
    engine.sweep(ev(paid("O9", "10:30", payment_id="P9")).occurred_ts)
    assert "pay|" + repr(ev(paid("O0", "10:15")).occurred_ts) in failed
    after = rate_state(engine)
    assert after.pop("dl") == {k: v for k, v in before.pop("dl").items() if k not in failed}
    assert after == before


#: what a generated step does to the rate shard: a payment, a creation failure, a command
#: (creation failures weighted: ten in a window raise a spike for the commands to act on)
_RATE_STEPS = (
    *("paid", "payment_failed", "payment_failed"),
    *("creation_failed",) * 4,
    *("acknowledge", "unacknowledge", "resolve", "reopen"),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(_RATE_STEPS),
            st.integers(0, 15),  # seconds after the previous step
            st.integers(0, 3),  # which exception of the rate shard a command is about
            st.booleans(),  # whether the step fails after it changed the shards
        ),
        min_size=40,
        max_size=150,
    )
)
def test_failed_steps_leave_the_rate_shard_as_if_they_never_came(
    steps: list[tuple[str, int, int, bool]],
) -> None:
    """Any run of payments, creation failures and commands on the rate shard's exceptions,
    some steps failing after they changed it: after each failed step the rate shard is as it
    was, and at the end every shard is as in a run where the failed events never came (only
    the deadlines due before them fired, as ``atomic.step`` fires them)."""
    tried, skipped = Engine(CATALOG), Engine(CATALOG)
    for engine in (tried, skipped):
        atomic.guard(engine, lambda *_: None)

    def boom(_: list[Any]) -> None:
        raise RuntimeError("cannot encode")

    at = ev(paid("O0", "10:00")).occurred_ts
    for i, (kind, gap, which, fails) in enumerate(steps):
        at += gap
        moment = plus("10:00", seconds=at - ev(paid("O0", "10:00")).occurred_ts)
        rates = tried.shards.get("g:rates")
        if kind in ("paid", "payment_failed"):
            make = paid if kind == "paid" else payment_failed
            data = make(f"O{i}", moment, payment_id=f"P{i}")
        elif kind == "creation_failed" or rates is None:
            data = creation_failed(moment, event_id=f"F{i}")
        else:
            known = [*rates.open.values(), *(rates.closed or {}).values()]
            if not known:
                continue
            op = known[which % len(known)]
            about = {"exception_id": op.exception_id, "rule_id": op.rule_id, "subject": op.subject}
            extra = {"resolution": "fixed"} if kind == "resolve" else {}
            data = command(kind, about, moment, **extra)
        event = ev(data)
        if fails:
            tried.sweep(event.occurred_ts)  # what ``step`` fires first stays: not the event's
            before = rate_state(tried) if rates is not None else None
            with pytest.raises(atomic.StepFailed):
                atomic.step(tried, event, event.occurred_ts, then=boom)
            if before is not None:
                assert rate_state(tried) == before, data["event_id"]
                assert tried.shards["g:rates"] is rates
            skipped.sweep(event.occurred_ts)
        else:
            atomic.step(tried, event, event.occurred_ts, then=list)
            atomic.step(skipped, event, event.occurred_ts, then=list)
    assert snapshot(tried)["shards"] == snapshot(skipped)["shards"]
