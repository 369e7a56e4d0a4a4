"""payment.orphan: a payment succeeds for an order_id with no order.created read within 10 min."""

from tests.factories import created, paid, run, status
from tests.unit.rules.rulebook import assert_card, at

RULE = "payment.orphan"


def test_paid_at_10_00_no_order_by_10_10_01_raises() -> None:
    payment = paid("O1", "10:00")
    result = run([payment, status("O9", "pending_payment", "10:10:01")])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "system", "high", "tech")
    assert (raised.subject, raised.order_id) == ("O1", "O1")
    assert raised.event_time == at("10:10")
    assert raised.detected_at == at("10:10:01")
    assert raised.evidence.event_ids == [payment["event_id"]]


def test_order_created_read_at_10_09_59_raises_nothing() -> None:
    events = [paid("O1", "10:00"), created("O1", "10:09:59"), status("O1", "paid", "10:09:59")]
    assert run(events, until="12:00").of(RULE) == []


def test_order_created_earlier_but_read_after_the_payment_raises_nothing() -> None:
    events = [paid("O1", "10:00"), created("O1", "09:58"), status("O1", "paid", "10:00:01")]
    assert run(events, until="12:00").of(RULE) == []


def test_clock_exactly_at_10_10_raises_nothing() -> None:
    assert run([paid("O1", "10:00")], until="10:10").of(RULE) == []


def test_order_created_read_late_resolves_with_the_same_id() -> None:
    order = created("O1", "09:58")
    events = [paid("O1", "10:00"), status("O9", "paid", "10:15"), order]
    raised, resolved = run(events).of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert order["event_id"] in resolved.evidence.event_ids
    assert resolved.detected_at == at("10:15")


def test_offsets_are_instants_order_created_at_18_05_plus_08_is_in_time() -> None:
    events = [paid("O1", "10:00"), created("O1", "2026-11-20T18:05:00+08:00")]
    assert run(events, until="12:00").of(RULE) == []


def test_redelivered_payment_raises_once_with_the_same_id() -> None:
    payment = paid("O1", "10:00")
    once = run([payment], until="10:11").of(RULE)
    again = run([payment, payment, paid("O1", "10:01")], until="10:11").of(RULE)
    assert [e.exception_id for e in once] == [e.exception_id for e in again]
    assert len(once) == 1


def test_open_for_an_hour_escalates() -> None:
    assert run([paid("O1", "10:00")], until="11:10").states(RULE) == ["raised"]
    assert run([paid("O1", "10:00")], until="11:10:01").states(RULE) == ["raised", "escalated"]
