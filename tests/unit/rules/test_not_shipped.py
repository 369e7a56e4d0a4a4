"""logistics.not_shipped: paid, and neither shipped nor cancelled by paid time + 48h."""

from datetime import datetime

from tests.factories import created, logistics, paid, plus, run, status
from tests.unit.rules.rulebook import assert_card

RULE = "logistics.not_shipped"
PAID = "10:00"
DEADLINE = plus(PAID, hours=48)


def test_paid_at_10_not_shipped_48h_later_raises() -> None:
    result = run(
        [created("O1", "09:59"), paid("O1", PAID), status("O1", "paid", "10:01")],
        until=plus(DEADLINE, seconds=1),
    )
    [raised] = result.of(RULE)
    assert raised.state == "raised" and raised.escalation_level == 0
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "logistics", "medium", "warehouse")
    assert raised.event_time.isoformat() == DEADLINE.replace("Z", "+00:00")
    assert raised.detected_at.isoformat() == plus(DEADLINE, seconds=1).replace("Z", "+00:00")
    assert raised.evidence.values["paid_at"] == "2026-11-20T10:00:00Z"
    assert raised.actions


def test_status_paid_alone_starts_the_clock() -> None:
    pay = status("O1", "paid", PAID)
    result = run([created("O1", "09:59"), pay], until=plus(DEADLINE, seconds=1))
    [raised] = result.of(RULE)
    assert raised.evidence.event_ids == [pay["event_id"]]


def test_paid_counts_from_the_earlier_of_payment_and_status() -> None:
    payment = paid("O1", PAID)
    result = run(
        [created("O1", "09:59"), payment, status("O1", "paid", "11:00")],
        until=plus(DEADLINE, seconds=1),
    )
    [raised] = result.of(RULE)
    assert raised.event_time.isoformat() == DEADLINE.replace("Z", "+00:00")
    assert raised.evidence.event_ids == [payment["event_id"]]


def test_one_second_before_the_deadline_nothing() -> None:
    result = run([created("O1", "09:59"), paid("O1", PAID)], until=plus(DEADLINE, seconds=-1))
    assert result.of(RULE) == []


def test_clock_exactly_at_the_deadline_nothing() -> None:
    result = run([created("O1", "09:59"), paid("O1", PAID)], until=DEADLINE)
    assert result.of(RULE) == []


def test_shipped_one_second_before_the_deadline_nothing() -> None:
    result = run(
        [
            created("O1", "09:59"),
            paid("O1", PAID),
            logistics("shipped", "O1", plus(DEADLINE, seconds=-1)),
        ],
        until=plus(DEADLINE, days=1),
    )
    assert result.of(RULE) == []


def test_status_shipped_counts_as_shipped() -> None:
    result = run(
        [created("O1", "09:59"), paid("O1", PAID), status("O1", "shipped", "20:00")],
        until=plus(DEADLINE, days=1),
    )
    assert result.of(RULE) == []


def test_never_paid_nothing() -> None:
    result = run(
        [created("O1", "09:59"), status("O1", "pending_payment", "10:00")],
        until=plus(DEADLINE, days=1),
    )
    assert result.of(RULE) == []


def test_cancelled_refunded_or_closed_orders_are_not_chased() -> None:
    for terminal in ("cancelled", "refunded", "closed"):
        result = run(
            [created("O1", "09:59"), paid("O1", PAID), status("O1", terminal, "12:00")],
            until=plus(DEADLINE, days=1),
        )
        assert result.of(RULE) == [], terminal


def test_shipped_after_the_deadline_resolves_with_the_same_id() -> None:
    ship = logistics("shipped", "O1", plus(DEADLINE, hours=1))
    result = run([created("O1", "09:59"), paid("O1", PAID), ship])
    raised, resolved = result.of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert ship["event_id"] in resolved.evidence.event_ids
    assert resolved.event_time == raised.event_time


def test_cancelled_after_raising_resolves_instead_of_escalating() -> None:
    cancel = status("O1", "cancelled", plus(DEADLINE, hours=1))
    result = run([created("O1", "09:59"), paid("O1", PAID), cancel], until=plus(DEADLINE, days=2))
    assert result.states(RULE) == ["raised", "resolved"]


def test_still_unshipped_escalates_every_4h_up_to_level_3() -> None:
    result = run([created("O1", "09:59"), paid("O1", PAID)], until=plus(DEADLINE, hours=20))
    events = result.of(RULE)
    assert [(e.state, e.escalation_level) for e in events] == [
        ("raised", 0),
        ("escalated", 1),
        ("escalated", 2),
        ("escalated", 3),
    ]
    assert len({e.exception_id for e in events}) == 1
    assert events[1].detected_at > datetime.fromisoformat(plus(DEADLINE, hours=4))
