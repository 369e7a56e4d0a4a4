"""payment.after_cancel: a payment succeeds for an order already cancelled or closed."""

import pytest

from tests.factories import created, paid, refunded, run, status
from tests.unit.rules.rulebook import assert_card, at

RULE = "payment.after_cancel"


@pytest.mark.parametrize("final", ["cancelled", "closed"])
def test_cancelled_at_10_00_paid_at_10_05_raises(final: str) -> None:
    cancel, payment = status("O1", final, "10:00"), paid("O1", "10:05")
    result = run([created("O1", "09:50"), cancel, payment])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "payment", "high", "payments")
    assert (raised.subject, raised.order_id) == ("O1", "O1")
    assert raised.event_time == at("10:05")
    assert raised.evidence.event_ids == [cancel["event_id"], payment["event_id"]]
    assert raised.evidence.values["payment_id"] == "P1"


def test_paid_at_09_59_then_cancelled_at_10_00_raises_nothing() -> None:
    events = [created("O1", "09:50"), paid("O1", "09:59"), status("O1", "paid", "09:59:05")]
    assert run([*events, status("O1", "cancelled", "10:00")]).of(RULE) == []


def test_paid_while_pending_raises_nothing() -> None:
    events = [created("O1", "09:50"), status("O1", "pending_payment", "09:50:01")]
    assert run([*events, paid("O1", "10:05")]).of(RULE) == []


def test_cancel_read_after_the_payment_still_counts_by_event_time() -> None:
    cancel = status("O1", "cancelled", "10:00")
    [raised] = run([created("O1", "09:50"), paid("O1", "10:05"), cancel]).of(RULE)
    assert raised.event_time == at("10:05")


def test_refunding_that_payment_resolves_with_the_same_id() -> None:
    refund = refunded("O1", "10:30", "P1")
    events = [created("O1", "09:50"), status("O1", "cancelled", "10:00"), paid("O1", "10:05")]
    raised, resolved = run([*events, refund]).of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert refund["event_id"] in resolved.evidence.event_ids


def test_refunding_another_payment_or_part_of_it_does_not_resolve() -> None:
    events = [created("O1", "09:50"), status("O1", "cancelled", "10:00"), paid("O1", "10:05")]
    assert run([*events, refunded("O1", "10:30", "P9")]).states(RULE) == ["raised"]
    partial = refunded("O1", "10:30", "P1", amount="99.00")
    assert run([*events, partial]).states(RULE) == ["raised"]


def test_payment_already_refunded_when_read_raises_nothing() -> None:
    events = [created("O1", "09:50"), status("O1", "cancelled", "10:00")]
    assert run([*events, refunded("O1", "10:06", "P1"), paid("O1", "10:05")]).of(RULE) == []


def test_a_second_late_payment_is_raised_once_the_first_is_refunded() -> None:
    events = [
        created("O1", "09:50"),
        status("O1", "cancelled", "10:00"),
        paid("O1", "10:05", "P1"),
        paid("O1", "10:06", "P2"),
        refunded("O1", "10:30", "P1"),
    ]
    first, resolved, second = run(events).of(RULE)
    assert (first.state, resolved.state, second.state) == ("raised", "resolved", "raised")
    assert second.evidence.values["payment_id"] == "P2"
    assert second.exception_id != first.exception_id


def test_gateway_recallback_after_cancel_raises_once() -> None:
    events = [created("O1", "09:50"), status("O1", "cancelled", "10:00")]
    callbacks = [paid("O1", "10:05"), paid("O1", "10:06"), paid("O1", "10:07")]
    assert run([*events, *callbacks, *callbacks]).states(RULE) == ["raised"]


def test_open_for_an_hour_escalates() -> None:
    events = [created("O1", "09:50"), status("O1", "cancelled", "10:00"), paid("O1", "10:05")]
    assert run(events, until="11:05").states(RULE) == ["raised"]
    assert run(events, until="11:05:01").states(RULE) == ["raised", "escalated"]


def test_paid_then_cancelled_and_refunded_is_healthy() -> None:
    events = [
        created("O1", "09:50"),
        paid("O1", "10:00"),
        status("O1", "paid", "10:00:02"),
        status("O1", "cancelled", "10:30"),
        refunded("O1", "10:35"),
        status("O1", "refunded", "10:36"),
    ]
    assert run(events, until="2026-11-23T10:00:00Z").exceptions == []


@pytest.mark.parametrize("reopened_read_first", [False, True])
def test_an_order_reopened_before_the_payment_raises_nothing(reopened_read_first: bool) -> None:
    """ "Already cancelled" is the status when the payment succeeded: reopened at 10:22, paid at
    10:25, the order was not cancelled any more (the reopening itself is a status regression)."""
    cancel, reopen = status("O1", "cancelled", "10:20"), status("O1", "pending_payment", "10:22")
    statuses = [reopen, cancel] if reopened_read_first else [cancel, reopen]
    events = [created("O1", "10:00"), *statuses, paid("O1", "10:25"), status("O1", "paid", "10:26")]
    result = run(events)
    assert result.of(RULE) == []
    if not reopened_read_first:  # (an older status read late is no regression: its own rule)
        assert result.states("order.status_regression") == ["raised"]


def test_cancelled_again_after_a_reopening_raises_for_the_later_payment() -> None:
    events = [
        created("O1", "10:00"),
        status("O1", "cancelled", "10:20"),
        status("O1", "pending_payment", "10:22"),
        status("O1", "closed", "10:24"),
        paid("O1", "10:25"),
    ]
    assert run(events).states(RULE) == ["raised"]
