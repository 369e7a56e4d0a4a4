"""logistics.rejected: the recipient refused the parcel (a notification for customer service)."""

from datetime import datetime

from tests.factories import created, logistics, paid, plus, run
from tests.unit.rules.helpers import carrier_exception
from tests.unit.rules.rulebook import assert_card

RULE = "logistics.rejected"


def _shipped() -> list[dict[str, object]]:
    return [created("O1", "09:00"), paid("O1", "09:05"), logistics("shipped", "O1", "12:00")]


def test_rejected_at_the_door_raises_high_for_customer_service() -> None:
    rejected = carrier_exception("O1", "16:30", "rejected", carrier="carrier-yto")
    result = run([*_shipped(), rejected])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "logistics", "high", "customer_service")
    assert raised.event_time == datetime.fromisoformat("2026-11-20T16:30:00Z")
    assert raised.evidence.event_ids == [rejected["event_id"]]
    assert raised.evidence.values["carrier"] == "carrier-yto"
    assert "carrier-yto" in raised.summary


def test_rejected_before_any_shipment_event_still_raises() -> None:
    result = run([created("O1", "09:00"), carrier_exception("O1", "16:30", "rejected")])
    assert result.states(RULE) == ["raised"]


def test_returned_to_sender_is_not_a_rejection() -> None:
    events = [*_shipped(), carrier_exception("O1", "16:30", "returned_to_sender")]
    assert run(events).of(RULE) == []


def test_lost_is_not_a_rejection() -> None:
    events = [*_shipped(), carrier_exception("O1", "16:30", "lost")]
    assert run(events).of(RULE) == []


def test_a_notification_is_never_escalated_nor_resolved() -> None:
    rejected = carrier_exception("O1", "16:30", "rejected")
    events = [*_shipped(), rejected, logistics("delivered", "O1", plus("16:30", hours=30))]
    result = run(events, until=plus("16:30", days=3))
    assert result.states(RULE) == ["raised"]


def test_a_second_rejection_of_the_same_order_raises_nothing_more() -> None:
    """A notification stays open for good: at most one per order (contract, section 2)."""
    first = carrier_exception("O1", "14:00", "rejected")
    events = [*_shipped(), first, carrier_exception("O1", "16:00", "rejected")]
    [raised] = run(events).of(RULE)
    assert raised.evidence.event_ids == [first["event_id"]]
