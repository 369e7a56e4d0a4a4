"""payment.amount_mismatch: a succeeded payment differs from the order total by more than 0.01."""

import pytest

from tests.factories import created, paid, run, status
from tests.unit.rules.rulebook import assert_card, at

RULE = "payment.amount_mismatch"


def test_order_of_199_00_paid_189_00_raises_at_the_payment() -> None:
    order, payment = created("O1", "09:59", total="199.00"), paid("O1", "10:00", amount="189.00")
    result = run([order, payment, status("O1", "paid", "10:00:05")])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "payment", "high", "payments")
    assert (raised.subject, raised.order_id) == ("O1", "O1")
    assert raised.event_time == at("10:00")
    assert raised.evidence.event_ids == [order["event_id"], payment["event_id"]]
    values = raised.evidence.values
    assert (values["paid_amount"], values["order_total"]) == ("189.00", "199.00")
    assert values["difference"] == "10.00"


@pytest.mark.parametrize("amount", ["199.02", "198.98", "1990.00", "19.90"])
def test_more_than_a_cent_off_raises(amount: str) -> None:
    result = run([created("O1", "09:59", total="199.00"), paid("O1", "10:00", amount=amount)])
    assert result.states(RULE) == ["raised"]


@pytest.mark.parametrize("amount", ["199.01", "198.99", "199", "199.0", "199.000", "199.0100"])
def test_within_a_cent_compared_as_decimals_raises_nothing(amount: str) -> None:
    result = run([created("O1", "09:59", total="199.00"), paid("O1", "10:00", amount=amount)])
    assert result.of(RULE) == []


def test_the_right_amount_in_another_currency_raises() -> None:
    result = run([created("O1", "09:59", currency="CNY"), paid("O1", "10:00", currency="USD")])
    [raised] = result.of(RULE)
    assert (raised.evidence.values["paid_currency"], raised.evidence.values["order_currency"]) == (
        "USD",
        "CNY",
    )


def test_currency_codes_differing_only_in_case_are_the_same_currency() -> None:
    result = run([created("O1", "09:59", currency="CNY"), paid("O1", "10:00", currency="cny")])
    assert result.of(RULE) == []


def test_payment_read_before_the_order_is_judged_when_the_order_arrives() -> None:
    payment = paid("O1", "10:00", amount="150.00")
    alone = run([payment])
    assert alone.of(RULE) == [], "no total to compare with yet"
    order = created("O1", "10:02", total="199.00")
    [raised] = run([payment, order]).of(RULE)
    assert raised.event_time == at("10:02"), "true once both are read"
    assert raised.evidence.event_ids == [order["event_id"], payment["event_id"]]


def test_gateway_recallbacks_of_one_wrong_payment_raise_once() -> None:
    events = [created("O1", "09:59"), *[paid("O1", f"10:0{i}", amount="1.00") for i in range(3)]]
    assert run(events + events).states(RULE) == ["raised"]


def test_a_notification_never_escalates_or_resolves() -> None:
    events = [created("O1", "09:59"), paid("O1", "10:00", amount="1.00")]
    result = run([*events, status("O1", "paid", "10:00:05")], until="2026-11-21T12:00:00Z")
    assert result.states(RULE) == ["raised"]


def test_a_second_mismatching_payment_of_the_same_order_raises_nothing_more() -> None:
    """A notification stays open for good: at most one per order (contract, section 2)."""
    first = paid("O1", "10:01", payment_id="P1", amount="99.00")
    events = [created("O1", "10:00"), first, paid("O1", "10:03", payment_id="P2", amount="99.00")]
    [raised] = run(events).of(RULE)
    assert raised.evidence.values["payment_id"] == "P1"
