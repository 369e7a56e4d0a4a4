"""logistics.orphan: a logistics event names an order of which no order.created is read by +10m."""

from datetime import datetime

from tests.factories import created, logistics, paid, plus, run, status
from tests.unit.rules.rulebook import assert_card

RULE = "logistics.orphan"


def test_shipped_at_10_for_an_unknown_order_raises_at_10_10() -> None:
    ship = logistics("shipped", "O9", "10:00")
    result = run([ship, status("O2", "pending_payment", "10:10:01")])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O9" and raised.order_id == "O9"
    assert_card(raised, "system", "medium", "tech")
    assert raised.event_time == datetime.fromisoformat("2026-11-20T10:10:00Z")
    assert raised.detected_at == datetime.fromisoformat("2026-11-20T10:10:01Z")
    assert raised.evidence.event_ids == [ship["event_id"]]
    assert raised.evidence.values["first_event_at"] == "2026-11-20T10:00:00Z"


def test_the_grace_counts_from_the_first_logistics_event() -> None:
    scan = logistics("scanned", "O9", "09:50")
    result = run([logistics("shipped", "O9", "10:00"), scan], until="10:00:01")
    [raised] = result.of(RULE)
    assert raised.event_time == datetime.fromisoformat("2026-11-20T10:00:00Z")
    assert raised.evidence.event_ids == [scan["event_id"]]


def test_one_second_before_the_grace_ends_nothing() -> None:
    result = run([logistics("shipped", "O9", "10:00")], until="10:09:59")
    assert result.of(RULE) == []


def test_order_created_read_within_the_grace_nothing() -> None:
    events = [logistics("shipped", "O9", "10:00"), created("O9", "09:00")]
    assert run(events, until="12:00").of(RULE) == []


def test_known_orders_are_not_orphans() -> None:
    events = [created("O1", "09:00"), paid("O1", "09:01"), logistics("shipped", "O1", "10:00")]
    assert run(events, until="12:00").of(RULE) == []


def test_order_created_read_late_resolves_with_the_same_id() -> None:
    late = created("O9", "09:00")
    result = run([logistics("shipped", "O9", "10:00"), status("O2", "paid", "10:30"), late])
    raised, resolved = result.of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert late["event_id"] in resolved.evidence.event_ids


def test_still_unknown_escalates_after_4h() -> None:
    result = run([logistics("shipped", "O9", "10:00")], until=plus("10:10", hours=4, seconds=1))
    assert [(e.state, e.escalation_level) for e in result.of(RULE)] == [
        ("raised", 0),
        ("escalated", 1),
    ]
