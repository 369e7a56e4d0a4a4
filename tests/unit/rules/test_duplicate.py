"""payment.duplicate: two distinct payment_ids succeeded for one order and are not refunded."""

from tests.factories import created, paid, refunded, run, status
from tests.unit.rules.rulebook import assert_card, at

RULE = "payment.duplicate"


def test_p1_at_10_00_and_p2_at_10_03_raise_at_the_second_payment() -> None:
    p1, p2 = paid("O1", "10:00", "P1"), paid("O1", "10:03", "P2")
    result = run([created("O1", "09:59"), p1, status("O1", "paid", "10:00:05"), p2])
    [raised] = result.of(RULE)
    assert raised.state == "raised" and raised.escalation_level == 0
    assert_card(raised, "payment", "high", "payments")
    assert (raised.subject, raised.order_id, raised.sku) == ("O1", "O1", None)
    assert raised.event_time == at("10:03")
    assert raised.evidence.event_ids == [p1["event_id"], p2["event_id"]]
    assert "P1" in raised.summary and "P2" in raised.summary


def test_a_third_payment_while_open_raises_nothing_more() -> None:
    events = [created("O1", "09:59"), paid("O1", "10:00", "P1"), paid("O1", "10:01", "P2")]
    result = run([*events, paid("O1", "10:02", "P3")])
    assert result.states(RULE) == ["raised"]


def test_gateway_calling_back_p1_three_times_is_one_payment() -> None:
    callbacks = [paid("O1", f"10:0{i}", "P1") for i in range(3)]  # new event_id each time
    result = run([created("O1", "09:59"), *callbacks, status("O1", "paid", "10:00:05")])
    assert result.of(RULE) == []


def test_redelivering_the_same_payment_events_changes_nothing() -> None:
    p1 = paid("O1", "10:00", "P1")
    events = [created("O1", "09:59"), p1, status("O1", "paid", "10:00:05")]
    assert run([*events, p1, p1]).of(RULE) == []
    p2 = paid("O1", "10:03", "P2")
    once = run([*events, p2]).of(RULE)
    twice = run([*events, p2, p1, p2]).of(RULE)
    assert [e.exception_id for e in once] == [e.exception_id for e in twice]
    assert len(once) == 1


def test_p1_refunded_before_p2_succeeds_leaves_one_payment() -> None:
    events = [
        created("O1", "09:59"),
        paid("O1", "10:00", "P1"),
        refunded("O1", "10:02", "P1"),
        paid("O1", "10:03", "P2"),
    ]
    assert run(events).of(RULE) == []


def test_payments_on_two_different_orders_are_not_a_duplicate() -> None:
    events = [created("O1", "09:59"), created("O2", "09:59")]
    result = run([*events, paid("O1", "10:00", "P1"), paid("O2", "10:01", "P2")])
    assert result.of(RULE) == []


def test_refunding_p2_resolves_with_the_same_id() -> None:
    refund = refunded("O1", "10:30", "P2")
    events = [created("O1", "09:59"), paid("O1", "10:00", "P1"), paid("O1", "10:03", "P2")]
    raised, resolved = run([*events, refund]).of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert resolved.detected_at == at("10:30")
    assert refund["event_id"] in resolved.evidence.event_ids


def test_with_three_payments_one_refund_leaves_it_open_and_the_second_resolves_it() -> None:
    events = [created("O1", "09:59")] + [paid("O1", f"10:0{i}", f"P{i}") for i in (1, 2, 3)]
    first = run([*events, refunded("O1", "10:30", "P3")])
    assert first.states(RULE) == ["raised"]
    second = run([*events, refunded("O1", "10:30", "P3"), refunded("O1", "10:31", "P1")])
    assert second.states(RULE) == ["raised", "resolved"]


def test_a_partial_refund_of_p2_does_not_resolve() -> None:
    events = [created("O1", "09:59"), paid("O1", "10:00", "P1"), paid("O1", "10:03", "P2")]
    result = run([*events, refunded("O1", "10:30", "P2", amount="10.00")])
    assert result.states(RULE) == ["raised"]
    rest = refunded("O1", "10:31", "P2", amount="189.00")
    rest["refund_id"] = "R-P2-rest"
    recallback = refunded("O1", "10:30:05", "P2", amount="10.00")  # same refund_id, new event
    partial_twice = [*events, refunded("O1", "10:30", "P2", amount="10.00"), recallback] * 2
    assert run(partial_twice).states(RULE) == ["raised"], "one refund_id counts once"
    assert run([*partial_twice, rest]).states(RULE) == ["raised", "resolved"]


def test_refunding_an_unrelated_payment_id_does_not_resolve() -> None:
    events = [created("O1", "09:59"), paid("O1", "10:00", "P1"), paid("O1", "10:03", "P2")]
    assert run([*events, refunded("O1", "10:30", "P9")]).states(RULE) == ["raised"]


def test_a_new_duplicate_after_resolution_is_a_new_exception() -> None:
    events = [
        created("O1", "09:59"),
        paid("O1", "10:00", "P1"),
        paid("O1", "10:03", "P2"),
        refunded("O1", "10:30", "P2"),
        paid("O1", "10:40", "P3"),
    ]
    first, resolved, again = run(events).of(RULE)
    assert (first.state, resolved.state, again.state) == ("raised", "resolved", "raised")
    assert again.exception_id != first.exception_id
    assert again.event_time == at("10:40")


def test_open_for_an_hour_escalates() -> None:
    events = [created("O1", "09:59"), paid("O1", "10:00", "P1"), paid("O1", "10:03", "P2")]
    assert run(events, until="11:03").states(RULE) == ["raised"]
    assert run(events, until="11:03:01").states(RULE) == ["raised", "escalated"]


def test_refunds_add_up_as_decimals() -> None:
    events = [
        created("O1", "09:59", total="0.07"),
        paid("O1", "10:00", "P1", amount="0.07"),
        paid("O1", "10:03", "P2", amount="0.07"),
    ]
    first, second = refunded("O1", "10:30", "P2", amount="0.01"), refunded("O1", "10:31", "P2")
    second["amount"], second["refund_id"] = "0.06", "R-P2-b"  # 0.01 + 0.06 < 0.07 in floats
    assert run([*events, first, second]).states(RULE) == ["raised", "resolved"]
