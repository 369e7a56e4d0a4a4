"""The engine's shortcuts (issue 13, engine speed) decide exactly as the long way round.

Each test runs the real engine over simulated traffic (every rule's anomalies injected) twice,
once with a shortcut and once without, and compares everything it writes and holds after every
event: the shortcuts may only save work, never change a verdict, a deadline or a shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from orderwatch.engine import Engine, ReplayClock, core, derived, kpi, orders
from orderwatch.engine.state import OrderShard, StockShard
from orderwatch.events.codec import decode_event
from orderwatch.events.inbound import InboundEvent, InventorySnapshot, OrderStatusChanged
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator, write_file
from tests.factories import created, logistics, paid, status, to_jsonl

_CATALOG = load_catalog()


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> list[InboundEvent]:
    path = tmp_path_factory.mktemp("sim") / "traffic.jsonl"
    write_file(Simulator(SimConfig(seed=13, orders=150, anomaly_rate=0.6)), path)
    # and statuses that run ahead of the carrier (delivered before its delivery is read, shipped
    # before the parcel, cancelled after shipping, refunded): each moves a timeout input
    lives = [
        [
            created(o, "2026-11-20T08:00:00Z"),
            paid(o, "2026-11-20T08:05:00Z", payment_id=f"P{o}"),
            status(o, "paid", "2026-11-20T08:06:00Z"),
            status(o, "shipped", "2026-11-20T09:00:00Z"),
            logistics("shipped", o, "2026-11-20T10:00:00Z"),
            status(o, last, "2026-11-21T09:00:00Z"),
            logistics("delivered", o, "2026-11-22T10:00:00Z"),
            status(o, "completed", "2026-11-23T10:00:00Z"),
        ]
        for o, last in (("X1", "delivered"), ("X2", "cancelled"), ("X3", "refunded"))
    ] + [
        # paid, then a terminal status that is not a cancel before any shipment: the order no
        # longer needs shipping (``logistics.not_shipped`` is cancelled by the status alone)
        [
            created(o, "2026-11-20T08:00:00Z"),
            paid(o, "2026-11-20T08:05:00Z", payment_id=f"P{o}"),
            status(o, "paid", "2026-11-20T08:06:00Z"),
            status(o, last, "2026-11-20T09:00:00Z"),
        ]
        for o, last in (("X4", "refunded"), ("X5", "completed"))
    ]
    early = [
        decode_event(line) for line in to_jsonl([e for life in lives for e in life]).splitlines()
    ]
    simulated = [decode_event(line) for line in Path(path).read_bytes().splitlines()]
    return sorted(early + simulated, key=lambda e: e.occurred_ts)


def _lockstep(events: list[InboundEvent], long_way: Any) -> Iterator[tuple[Any, Any]]:
    """(shortcut, long way) pairs of each step's output and the stepped order's shard."""
    fast, slow = Engine(_CATALOG, track_dirty=False), Engine(_CATALOG, track_dirty=False)
    fast_clock, slow_clock = ReplayClock(), ReplayClock()
    for event in events:
        out_fast = fast.step(event, fast_clock.observe(event.occurred_ts))
        with long_way():
            out_slow = slow.step(event, slow_clock.observe(event.occurred_ts))
        yield [e.model_dump_json() for e in out_fast], [e.model_dump_json() for e in out_slow]
        key = "o:" + str(getattr(event, "order_id", None))
        if key in fast.shards or key in slow.shards:
            yield fast.shards[key].to_dict(), slow.shards[key].to_dict()
    yield (
        [e.model_dump_json() for e in fast.sweep(fast_clock.finish(None))],
        [e.model_dump_json() for e in slow.sweep(slow_clock.finish(None))],
    )
    yield (
        [r.model_dump_json() for r in fast.take_kpis()],
        [r.model_dump_json() for r in slow.take_kpis()],
    )
    yield (
        {k: s.to_dict() for k, s in fast.shards.items()},
        {k: s.to_dict() for k, s in slow.shards.items()},
    )


def _shortcut_agrees(
    traffic: list[InboundEvent], name: str, long_way: Callable[[Engine, Any, Any, float], bool]
) -> None:
    """Run ``traffic`` with the predicate ``orders.<name>`` (False: the shortcut is taken) in
    lockstep with ``long_way`` in its place: the shortcut must be taken often (else the test
    proves nothing) and every output and shard must be the same."""
    real = getattr(orders, name)
    calls = {"short": 0}

    def counting(ctx: Engine, s: Any, ev: Any, now: float) -> bool:
        moved: bool = real(ctx, s, ev, now)
        calls["short"] += not moved
        return moved

    with mock.patch.object(orders, name, counting):
        pairs = list(_lockstep(traffic, lambda: mock.patch.object(orders, name, long_way)))
    assert calls["short"] > 100  # the shortcut is taken (else this test proves nothing)
    for fast, slow in pairs:
        assert fast == slow


def test_a_status_change_that_moves_nothing_skips_refresh_and_nothing_differs(
    traffic: list[InboundEvent],
) -> None:
    real = orders._status_moved

    def always(ctx: Engine, s: Any, ev: Any, now: float) -> bool:
        real(ctx, s, ev, now)
        return True  # the long way: refresh after every status change

    _shortcut_agrees(traffic, "_status_moved", always)


def test_observers_called_only_for_the_events_they_read_decide_the_same(
    traffic: list[InboundEvent],
) -> None:
    """``orders.apply`` calls ``kpi.observe`` for a status change or a delivery only once the
    order shipped and is not judged on both indicators: the long way calls it for every one."""
    real_apply = orders.apply

    def long_apply(ctx: Engine, s: Any, ev: Any, now: float) -> None:
        real_apply(ctx, s, ev, now)
        if type(ev) in kpi.WATCHED and type(ev) not in kpi.ALWAYS:
            kpi.observe(ctx, s, ev, now)  # idempotent: a second call must change nothing

    for fast, slow in _lockstep(
        traffic, lambda: mock.patch.dict(core._APPLY, {OrderShard: long_apply})
    ):
        assert fast == slow


def test_a_contribution_is_built_as_model_construct_builds_it() -> None:
    built = derived.contribution("on_time_shipment_rate", 3600.0, "WH-1", "O1", 1, 42.5, "id")
    constructed = derived.Contribution.model_construct(
        type=derived.CONTRIBUTION,
        event_id="id",
        kpi="on_time_shipment_rate",
        window_start=3600.0,
        dimension="WH-1",
        item="O1",
        hit=1,
        occurred_ts=42.5,
    )
    assert built == constructed
    assert list(built.__dict__) == list(constructed.__dict__)  # field order: the JSON's order
    assert built.model_fields_set == constructed.model_fields_set
    assert built.__pydantic_extra__ is None and built.__pydantic_private__ is None
    assert built.to_bytes() == constructed.to_bytes()
    assert derived.decode(built.to_bytes()) == constructed
    assert built.shard_key == "g:kpis/3600"


def test_a_scan_refreshes_only_the_tracking_deadline_and_nothing_differs(
    traffic: list[InboundEvent],
) -> None:
    """``orders._scan_moved``: after a carrier scan that moved only the latest carrier event,
    ``logistics.tracking_stale`` alone is brought in line; the long way runs ``_refresh``."""

    def always(ctx: Engine, s: Any, ev: Any, now: float) -> bool:
        orders._logistics(ctx, s, ev, now)
        return True  # the long way: refresh after every scan

    _shortcut_agrees(traffic, "_scan_moved", always)


def test_a_scan_after_tracking_stale_was_raised_and_resolved_decides_as_the_long_way() -> None:
    """The armed test of ``_refresh_tracking``: a stale tracking raised, resolved by a scan
    (the full refresh runs), then scans that re-arm it and let it fire again; and a scan read
    late, older than the last one, which moves nothing."""
    o = "T1"
    lines = to_jsonl(
        [
            created(o, "2026-11-20T08:00:00Z"),
            paid(o, "2026-11-20T08:05:00Z", payment_id="PT1"),
            logistics("shipped", o, "2026-11-20T10:00:00Z"),
            logistics("scanned", o, "2026-11-20T12:00:00Z"),
            logistics("scanned", o, "2026-11-25T12:00:00Z"),  # after it went stale: resolves
            logistics("out_for_delivery", o, "2026-11-25T13:00:00Z"),
            logistics("scanned", o, "2026-11-25T11:00:00Z"),  # late and older: moves nothing
            logistics("scanned", o, "2026-11-30T13:00:00Z"),  # stale again in between
            # shipped by its status before the carrier's scans: the tracking deadline runs
            # from the status (the later), whatever scans earlier than it say
            created("T2", "2026-12-01T08:00:00Z"),
            paid("T2", "2026-12-01T08:05:00Z", payment_id="PT2"),
            status("T2", "shipped", "2026-12-01T10:00:00Z"),
            logistics("scanned", "T2", "2026-12-01T09:00:00Z"),
            logistics("scanned", "T2", "2026-12-01T09:30:00Z"),
            logistics("scanned", "T2", "2026-12-06T09:30:00Z"),
        ]
    )
    events = [decode_event(line) for line in lines.splitlines()]  # as read, one late
    real = orders._scan_moved

    def always(ctx: Engine, s: Any, ev: Any, now: float) -> bool:
        orders._logistics(ctx, s, ev, now)
        return True

    raised = 0
    for fast, slow in _lockstep(events, lambda: mock.patch.object(orders, "_scan_moved", always)):
        assert fast == slow
        if isinstance(fast, list):
            raised += sum('"logistics.tracking_stale"' in e for e in fast)
    assert raised >= 4  # raised, resolved, raised again, resolved: the armed test was exercised
    assert orders._scan_moved is real


def test_contributions_applied_in_place_as_plain_objects_decide_as_the_records(
    traffic: list[InboundEvent],
) -> None:
    """``kpi.Counted``: in replay (not ``forward``) a contribution is a plain object, not the
    pydantic record the shard topic needs; the long way builds the record every time."""
    made = {"plain": 0, "records": 0}
    real = kpi.Counted

    def counting(*args: Any) -> Any:
        made["plain"] += 1
        return real(*args)

    def record(kpi_name: str, start: float, dim: str, item: str, hit: int, now: float) -> Any:
        made["records"] += 1
        if kpi_name == kpi.PAY:
            built = kpi._payment_contribution(item, start, dim, hit, now)
        else:
            built = kpi._contribution(kpi_name, start, dim, item, hit, now)
        assert real(kpi_name, start, dim, item, hit, now).event_id == built.event_id
        return built

    with mock.patch.object(kpi, "Counted", counting):
        pairs = list(_lockstep(traffic, lambda: mock.patch.object(kpi, "Counted", record)))
    assert made["plain"] > 100 and made["plain"] == made["records"]
    for fast, slow in pairs:
        assert fast == slow


def test_a_live_engine_still_forwards_contribution_records() -> None:
    """With ``forward`` (live) the contributions leave as ``derived.Contribution`` records."""
    engine = Engine(_CATALOG, track_dirty=False)
    engine.forward = True
    clock = ReplayClock()
    lines = to_jsonl([created("F1", "2026-11-20T08:00:00Z"), paid("F1", "2026-11-20T08:05:00Z")])
    for line in lines.splitlines():
        event = decode_event(line)
        engine.step(event, clock.observe(event.occurred_ts))
    sent = [r for r in engine.take_derived() if type(r) is derived.Contribution]
    assert sent and all(r.event_id.startswith(derived.CONTRIBUTION) for r in sent)


@pytest.mark.parametrize("track_dirty", [False, True])
def test_a_snapshot_goes_to_its_stock_shard_as_its_route_says(
    traffic: list[InboundEvent], track_dirty: bool
) -> None:
    """``Engine.step`` applies an inventory snapshot to its stock shard, and an order's own
    event to the order's shard, without building a route and with ``_apply`` inline; the long
    way passes ``only=Engine.route(event)`` (``_step_keys``, ``_apply``) for every event."""
    fast = Engine(_CATALOG, track_dirty=track_dirty)
    slow = Engine(_CATALOG, track_dirty=track_dirty)
    assert fast._inline  # the shortcut is on (a subclass overriding ``_apply`` turns it off)
    fast_clock, slow_clock = ReplayClock(), ReplayClock()
    snapshots = orders_own = 0
    for event in traffic:
        out_fast = fast.step(event, fast_clock.observe(event.occurred_ts))
        only = Engine.route(event)
        out_slow = slow.step(event, slow_clock.observe(event.occurred_ts), only=only)
        assert [e.model_dump_json() for e in out_fast] == [e.model_dump_json() for e in out_slow]
        if type(event) is InventorySnapshot or type(event) in core._ORDER_ONLY:
            snapshots += type(event) is InventorySnapshot
            orders_own += type(event) is not InventorySnapshot
            (key,) = only
            kind = StockShard if type(event) is InventorySnapshot else OrderShard
            assert type(fast.shards[key]) is type(slow.shards[key]) is kind
            assert fast.shards[key].to_dict() == slow.shards[key].to_dict()
            assert fast.shards[key].last_at == slow.shards[key].last_at
        assert fast._heap == slow._heap
        assert fast.take_dirty() == slow.take_dirty()
    assert snapshots > 100 and orders_own > 1000
    assert fast.sweep(fast_clock.finish(None)) == slow.sweep(slow_clock.finish(None))
    assert {k: s.to_dict() for k, s in fast.shards.items()} == {
        k: s.to_dict() for k, s in slow.shards.items()
    }


def test_an_events_fields_read_from_its_dict_are_its_attributes(
    traffic: list[InboundEvent],
) -> None:
    """``stock.apply`` reads a snapshot's fields from the model's ``__dict__`` (a key) instead
    of its attributes (pydantic's ``__getattr__`` hook): every field is there, and
    ``occurred_ts`` once read (``stock.apply`` reads the attribute when it is not)."""
    line = to_jsonl([status("D1", "paid", "2026-11-20T08:06:00Z")]).splitlines()[0]
    fresh = decode_event(line)
    checked = 0
    for event in [fresh, *traffic]:
        d = event.__dict__
        for name in type(event).model_fields:
            assert d[name] == getattr(event, name)
        assert d.get("occurred_ts") in (None, event.occurred_ts)
        assert d["occurred_ts"] == event.occurred_ts  # read now: in the dict from here on
        checked += 1
    assert checked > 1000


def test_a_status_change_notes_no_fact() -> None:
    """``orders.apply`` asks ``_FACT_NOTERS`` for every order event but a status change."""
    assert OrderStatusChanged not in orders._FACT_NOTERS
