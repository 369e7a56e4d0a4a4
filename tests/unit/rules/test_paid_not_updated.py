"""payment.paid_not_updated: a payment succeeded but the order status has not reached paid by +T."""

from tests.factories import created, paid, run, status
from tests.unit.rules.rulebook import at

RULE = "payment.paid_not_updated"


def test_paid_at_10_status_still_pending_at_10_10_01_raises() -> None:
    result = run(
        [created("O1", "09:59"), paid("O1", "10:00"), status("O2", "pending_payment", "10:10:01")]
    )
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert raised.event_time.isoformat() == "2026-11-20T10:10:00+00:00"
    assert raised.detected_at.isoformat() == "2026-11-20T10:10:01+00:00"
    assert raised.owner == "tech" and raised.severity == "high" and raised.category == "payment"
    assert raised.actions, "the playbook travels with the exception"


def test_status_paid_at_10_09_raises_nothing() -> None:
    result = run(
        [created("O1", "09:59"), paid("O1", "10:00"), status("O1", "paid", "10:09")], until="12:00"
    )
    assert result.of(RULE) == []


def test_clock_exactly_at_the_deadline_does_not_fire() -> None:
    result = run([created("O1", "09:59"), paid("O1", "10:00")], until="10:10")
    assert result.of(RULE) == []


def test_status_after_the_deadline_resolves_with_the_same_id() -> None:
    result = run([created("O1", "09:59"), paid("O1", "10:00"), status("O1", "paid", "10:12")])
    raised, resolved = result.of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id


def test_the_same_input_gives_the_same_exception_id() -> None:
    events = [created("O1", "09:59"), paid("O1", "10:00")]
    first = run(events, until="10:30").of(RULE)
    again = run(events + events, until="10:30").of(RULE)
    assert [e.exception_id for e in first] == [e.exception_id for e in again]
    assert len(first) == 1


# --- escalation (CONTRACT section 6): high escalates every 1 h after event_time, up to level 3 ---


def test_still_open_at_11_10_01_escalates_to_level_1_with_the_same_id() -> None:
    events = [created("O1", "09:59"), paid("O1", "10:00")]
    assert run(events, until="11:10").states(RULE) == ["raised"]
    raised, escalated = run(events, until="11:10:01").of(RULE)
    assert escalated.state == "escalated"
    assert escalated.exception_id == raised.exception_id
    assert (raised.escalation_level, escalated.escalation_level) == (0, 1)
    assert escalated.event_time == raised.event_time == at("10:10")
    assert escalated.detected_at == at("11:10:01")
    assert (escalated.severity, escalated.owner) == ("high", "tech")


def test_escalates_each_hour_and_stops_at_level_3() -> None:
    clock = [status("O9", "pending_payment", t) for t in ("11:10:01", "12:10:01", "13:10:01")]
    result = run(
        [created("O1", "09:59"), paid("O1", "10:00"), *clock], until="2026-11-21T10:00:00Z"
    )
    raised, *escalations = result.of(RULE)
    assert [e.escalation_level for e in escalations] == [1, 2, 3]
    assert [e.detected_at for e in escalations] == [at("11:10:01"), at("12:10:01"), at("13:10:01")]
    assert {e.exception_id for e in escalations} == {raised.exception_id}


def test_resolving_after_an_escalation_keeps_the_id_and_stops_escalating() -> None:
    events = [created("O1", "09:59"), paid("O1", "10:00"), status("O1", "paid", "11:30")]
    raised, escalated, resolved = run(events, until="2026-11-21T10:00:00Z").of(RULE)
    assert [raised.state, escalated.state, resolved.state] == ["raised", "escalated", "resolved"]
    assert resolved.exception_id == raised.exception_id
    assert resolved.escalation_level == 1


def test_notifications_never_escalate() -> None:
    events = [
        created("O1", "09:59"),
        paid("O1", "10:00", amount="1.00"),  # payment.amount_mismatch, high
        status("O1", "shipped", "10:01"),
        status("O1", "paid", "10:02"),  # order.status_regression, medium
    ]
    result = run(events, until="2026-11-21T10:00:00Z")
    assert result.states("payment.amount_mismatch") == ["raised"]
    assert result.states("order.status_regression") == ["raised"]
