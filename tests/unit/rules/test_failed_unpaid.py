"""payment.failed_unpaid: a payment failed, none succeeded within 30 min, order not cancelled."""

import pytest

from tests.factories import created, paid, payment_failed, run, status
from tests.unit.rules.rulebook import assert_card, at

RULE = "payment.failed_unpaid"


def test_failed_at_10_00_nothing_by_10_30_01_raises() -> None:
    failed = payment_failed("O1", "10:00")
    result = run([created("O1", "09:59"), failed], until="10:30:01")
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "payment", "medium", "customer_service")
    assert (raised.subject, raised.order_id) == ("O1", "O1")
    assert raised.event_time == at("10:30")
    assert raised.detected_at == at("10:30:01")
    assert raised.evidence.event_ids == [failed["event_id"]]


def test_the_first_failure_starts_the_clock() -> None:
    events = [created("O1", "09:59"), payment_failed("O1", "10:00"), payment_failed("O1", "10:20")]
    [raised] = run(events, until="10:30:01").of(RULE)
    assert raised.event_time == at("10:30")


def test_success_at_10_29_59_raises_nothing() -> None:
    events = [created("O1", "09:59"), payment_failed("O1", "10:00"), paid("O1", "10:29:59")]
    assert run([*events, status("O1", "paid", "10:29:59")], until="12:00").of(RULE) == []


def test_clock_exactly_at_10_30_raises_nothing() -> None:
    events = [created("O1", "09:59"), payment_failed("O1", "10:00")]
    assert run(events, until="10:30").of(RULE) == []


@pytest.mark.parametrize("final", ["cancelled", "closed"])
def test_order_cancelled_or_closed_before_the_deadline_raises_nothing(final: str) -> None:
    events = [created("O1", "09:59"), payment_failed("O1", "10:00"), status("O1", final, "10:20")]
    assert run(events, until="12:00").of(RULE) == []


def test_a_success_after_the_deadline_resolves_with_the_same_id() -> None:
    success = paid("O1", "10:45")
    events = [created("O1", "09:59"), payment_failed("O1", "10:00"), success]
    raised, resolved = run(events).of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert resolved.detected_at == at("10:45")
    assert success["event_id"] in resolved.evidence.event_ids


def test_offsets_are_instants_failure_at_18_00_plus_08_is_10_00_z() -> None:
    failed = payment_failed("O1", "2026-11-20T18:00:00+08:00")
    events = [created("O1", "09:59"), failed, paid("O1", "10:29:59")]
    assert run(events, until="12:00").of(RULE) == []
    [raised] = run(events[:2], until="10:30:01").of(RULE)
    assert raised.event_time == at("10:30")


def test_redelivered_failure_raises_once_with_the_same_id() -> None:
    failed = payment_failed("O1", "10:00")
    once = run([created("O1", "09:59"), failed], until="10:31").of(RULE)
    again = run([created("O1", "09:59"), failed, failed], until="10:31").of(RULE)
    assert [e.exception_id for e in once] == [e.exception_id for e in again]
    assert len(once) == 1


def test_open_for_four_hours_escalates() -> None:
    events = [created("O1", "09:59"), payment_failed("O1", "10:00")]
    assert run(events, until="14:30").states(RULE) == ["raised"]
    assert run(events, until="14:30:01").states(RULE) == ["raised", "escalated"]


def test_customer_retrying_and_paying_is_healthy() -> None:
    events = [
        created("O1", "09:59"),
        payment_failed("O1", "10:00", payment_id="PF1"),
        payment_failed("O1", "10:02", payment_id="PF2", reason_code="wrong_password"),
        paid("O1", "10:04", payment_id="P1"),
        status("O1", "paid", "10:04:02"),
    ]
    assert run(events, until="10:40").exceptions == []
