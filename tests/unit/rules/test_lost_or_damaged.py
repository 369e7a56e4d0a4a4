"""logistics.lost_or_damaged: the carrier reports the parcel lost or damaged (a notification)."""

from datetime import datetime

from tests.factories import created, logistics, paid, plus, run
from tests.unit.rules.helpers import carrier_exception
from tests.unit.rules.rulebook import assert_card

RULE = "logistics.lost_or_damaged"


def _shipped() -> list[dict[str, object]]:
    return [created("O1", "09:00"), paid("O1", "09:05"), logistics("shipped", "O1", "12:00")]


def test_lost_at_14_00_raises_critical_for_logistics() -> None:
    lost = carrier_exception("O1", "14:00", "lost", detail="left at 138 0000 1111")
    result = run([*_shipped(), lost])
    [raised] = result.of(RULE)
    assert raised.state == "raised" and raised.escalation_level == 0
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "logistics", "critical", "logistics")
    assert raised.event_time == datetime.fromisoformat("2026-11-20T14:00:00Z")
    assert raised.evidence.event_ids == [lost["event_id"]]
    assert raised.evidence.values["kind"] == "lost"
    assert raised.evidence.values["tracking_no"] == "TN-O1"
    assert "138 0000 1111" not in raised.model_dump_json(), "free-text detail stays out"


def test_damaged_raises_too() -> None:
    result = run([*_shipped(), carrier_exception("O1", "14:00", "damaged")])
    [raised] = result.of(RULE)
    assert raised.evidence.values["kind"] == "damaged"
    assert "damaged" in raised.summary


def test_other_exception_kinds_are_not_lost_or_damaged() -> None:
    kinds = ["rejected", "returned_to_sender", "other", "address_unreachable", "phone_unreachable"]
    events = _shipped() + [carrier_exception("O1", "14:00", k) for k in kinds]
    assert run(events).of(RULE) == []


def test_normal_tracking_never_raises() -> None:
    events = [
        *_shipped(),
        logistics("scanned", "O1", "18:00", detail="damaged box replaced"),
        logistics("out_for_delivery", "O1", plus("18:00", hours=20)),
        logistics("delivered", "O1", plus("18:00", hours=22)),
    ]
    assert run(events).of(RULE) == []


def test_a_notification_is_never_escalated_nor_resolved() -> None:
    lost = carrier_exception("O1", "14:00", "lost")
    result = run([*_shipped(), lost, lost], until=plus("14:00", days=3))
    assert result.states(RULE) == ["raised"]


def test_a_second_report_for_the_same_order_raises_nothing_more() -> None:
    """A notification stays open for good: at most one per order (contract, section 2)."""
    first = carrier_exception("O1", "14:00", "lost")
    events = [*_shipped(), first, carrier_exception("O1", "14:05", "damaged")]
    [raised] = run(events).of(RULE)
    assert raised.evidence.event_ids == [first["event_id"]]
