"""payment.paid_not_updated: a payment succeeded but the order status has not reached paid by +T."""

from tests.factories import created, paid, run, status

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
