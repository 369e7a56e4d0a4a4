"""inventory.sync_drift: two sources' latest snapshots differ beyond max(5, 10 %) for 15 min."""

from tests.factories import run, snapshot
from tests.unit.rules.rulebook import assert_card, at

RULE = "inventory.sync_drift"


def test_wms_100_oms_80_at_10_00_still_at_10_15_01_raises() -> None:
    wms, oms = snapshot("SKU-1", "10:00", 100, "wms"), snapshot("SKU-1", "10:00", 80, "oms")
    result = run([wms, oms], until="10:15:01")
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "inventory", "medium", "warehouse")
    assert raised.subject == "SKU-1/WH1"
    assert (raised.sku, raised.warehouse_id, raised.order_id) == ("SKU-1", "WH1", None)
    assert raised.event_time == at("10:15")
    assert raised.detected_at == at("10:15:01")
    assert sorted(raised.evidence.event_ids) == sorted([wms["event_id"], oms["event_id"]])
    assert raised.evidence.values["difference"] == 20


def test_the_drift_starts_when_the_second_source_disagrees() -> None:
    events = [snapshot("SKU-1", "10:00", 100, "wms"), snapshot("SKU-1", "10:04", 80, "erp")]
    assert run(events, until="10:19").of(RULE) == []
    [raised] = run(events, until="10:19:01").of(RULE)
    assert raised.event_time == at("10:19")
    assert raised.evidence.event_ids == [events[0]["event_id"], events[1]["event_id"]], (
        "oldest first"
    )


def test_clock_exactly_at_10_15_raises_nothing() -> None:
    events = [snapshot("SKU-1", "10:00", 100, "wms"), snapshot("SKU-1", "10:00", 80, "oms")]
    assert run(events, until="10:15").of(RULE) == []


def test_differences_at_the_bound_raise_nothing_and_one_more_raises() -> None:
    def drift(a: int, b: int) -> list[str]:
        events = [snapshot("SKU-1", "10:00", a, "wms"), snapshot("SKU-1", "10:00", b, "oms")]
        return run(events, until="11:00").states(RULE)

    assert drift(100, 90) == [], "10 is exactly 10 % of the larger"
    assert drift(100, 89) == ["raised"]
    assert drift(40, 35) == [], "5 is exactly the absolute minimum"
    assert drift(40, 34) == ["raised"]
    assert drift(3, -3) == ["raised"], "available may be negative"


def test_agreeing_again_at_10_14_raises_nothing() -> None:
    events = [
        snapshot("SKU-1", "10:00", 100, "wms"),
        snapshot("SKU-1", "10:00", 80, "oms"),
        snapshot("SKU-1", "10:14", 98, "oms"),
    ]
    assert run(events, until="12:00").of(RULE) == []


def test_agreeing_again_at_10_20_resolves_with_the_same_id() -> None:
    fix = snapshot("SKU-1", "10:20", 81, "wms")
    events = [snapshot("SKU-1", "10:00", 100, "wms"), snapshot("SKU-1", "10:00", 80, "oms"), fix]
    raised, resolved = run(events).of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert fix["event_id"] in resolved.evidence.event_ids
    assert resolved.detected_at == at("10:20")


def test_other_warehouses_and_skus_are_not_compared() -> None:
    events = [
        snapshot("SKU-1", "10:00", 100, "wms", warehouse_id="WH1"),
        snapshot("SKU-1", "10:00", 10, "oms", warehouse_id="WH2"),
        snapshot("SKU-2", "10:00", 10, "oms", warehouse_id="WH1"),
    ]
    assert run(events, until="12:00").of(RULE) == []


def test_an_older_snapshot_read_late_does_not_replace_the_latest() -> None:
    events = [
        snapshot("SKU-1", "10:00", 100, "wms"),
        snapshot("SKU-1", "10:00", 100, "oms"),
        snapshot("SKU-1", "09:50", 20, "oms"),
    ]
    assert run(events, until="12:00").of(RULE) == []


def test_redelivered_snapshots_change_nothing() -> None:
    events = [snapshot("SKU-1", "10:00", 100, "wms"), snapshot("SKU-1", "10:00", 80, "oms")]
    once = run(events, until="10:30").of(RULE)
    again = run(events + events, until="10:30").of(RULE)
    assert [e.exception_id for e in once] == [e.exception_id for e in again]
    assert len(once) == 1


def test_offsets_are_instants_18_14_plus_08_agrees_before_the_deadline() -> None:
    events = [
        snapshot("SKU-1", "10:00", 100, "wms"),
        snapshot("SKU-1", "10:00", 80, "oms"),
        snapshot("SKU-1", "2026-11-20T18:14:00+08:00", 100, "oms"),
    ]
    assert run(events, until="12:00").of(RULE) == []


def test_open_for_four_hours_escalates() -> None:
    events = [snapshot("SKU-1", "10:00", 100, "wms"), snapshot("SKU-1", "10:00", 80, "oms")]
    assert run(events, until="14:15").states(RULE) == ["raised"]
    assert run(events, until="14:15:01").states(RULE) == ["raised", "escalated"]
