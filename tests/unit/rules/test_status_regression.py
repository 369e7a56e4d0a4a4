"""order.status_regression: a status change backwards in the progress order or out of terminal."""

import pytest

from tests.factories import created, run, status
from tests.unit.rules.rulebook import assert_card, at

RULE = "order.status_regression"
ORDER = created("O1", "09:00")


def test_shipped_at_10_00_then_paid_at_10_05_raises() -> None:
    back = status("O1", "paid", "10:05")
    result = run([ORDER, status("O1", "shipped", "10:00"), back])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "system", "medium", "tech")
    assert (raised.subject, raised.order_id) == ("O1", "O1")
    assert raised.event_time == at("10:05") == raised.detected_at
    assert raised.evidence.event_ids == [back["event_id"]]
    values = raised.evidence.values
    assert (values["from_status"], values["to_status"]) == ("shipped", "paid")


def test_previous_status_in_the_event_is_enough() -> None:
    back = status("O1", "allocated", "10:05", previous_status="delivered")
    [raised] = run([ORDER, back]).of(RULE)
    assert raised.evidence.values["from_status"] == "delivered"


@pytest.mark.parametrize("terminal", ["cancelled", "refunded", "closed"])
def test_out_of_a_terminal_status_raises(terminal: str) -> None:
    events = [ORDER, status("O1", terminal, "10:00"), status("O1", "paid", "10:05")]
    assert run(events).states(RULE) == ["raised"]


def test_the_whole_progress_order_raises_nothing() -> None:
    steps = ["pending_payment", "paid", "allocated", "shipped", "delivered", "completed"]
    events = [ORDER] + [status("O1", s, f"10:0{i}") for i, s in enumerate(steps)]
    assert run([*events, status("O1", "refunded", "10:09")]).of(RULE) == []


@pytest.mark.parametrize(
    ("before", "after"),
    [("cancelled", "closed"), ("cancelled", "refunded"), ("paid", "paid"), ("paid", "cancelled")],
)
def test_between_terminals_repeated_or_into_terminal_raises_nothing(
    before: str, after: str
) -> None:
    events = [ORDER, status("O1", before, "10:00"), status("O1", after, "10:05")]
    assert run(events).of(RULE) == []


def test_an_older_status_read_late_is_not_a_regression() -> None:
    events = [ORDER, status("O1", "shipped", "10:05"), status("O1", "paid", "10:00")]
    assert run(events).of(RULE) == []


def test_two_statuses_in_the_same_second_read_in_either_order_raise_nothing() -> None:
    events = [ORDER, status("O1", "allocated", "10:00"), status("O1", "paid", "10:00")]
    assert run(events).of(RULE) == []


def test_redelivered_regression_raises_once() -> None:
    shipped, back = status("O1", "shipped", "10:00"), status("O1", "paid", "10:05")
    once = run([ORDER, shipped, back]).of(RULE)
    again = run([ORDER, shipped, back, shipped, back]).of(RULE)
    assert [e.exception_id for e in once] == [e.exception_id for e in again]
    assert len(once) == 1


def test_a_notification_never_escalates_or_resolves() -> None:
    events = [ORDER, status("O1", "shipped", "10:00"), status("O1", "paid", "10:05")]
    result = run([*events, status("O1", "shipped", "10:06")], until="2026-11-21T10:00:00Z")
    assert result.states(RULE) == ["raised"]


def test_a_second_regression_of_the_same_order_raises_nothing_more() -> None:
    """A notification stays open for good: at most one per order (contract, section 2)."""
    first = status("O1", "paid", "10:02")
    events = [
        ORDER,
        status("O1", "shipped", "10:01"),
        first,
        status("O1", "shipped", "10:03"),
        status("O1", "allocated", "10:04"),
    ]
    [raised] = run(events).of(RULE)
    assert raised.evidence.event_ids == [first["event_id"]]
