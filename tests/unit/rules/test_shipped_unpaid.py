"""order.shipped_unpaid: logistics.shipped for an order still not paid 10 min after shipping."""

from tests.factories import created, logistics, paid, run, status
from tests.unit.rules.rulebook import assert_card, at

RULE = "order.shipped_unpaid"
ORDER = created("O1", "09:00")


def test_shipped_at_11_00_unpaid_at_11_10_01_raises() -> None:
    shipped = logistics("shipped", "O1", "11:00")
    result = run([ORDER, shipped], until="11:10:01")
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "fraud", "critical", "risk")
    assert (raised.subject, raised.order_id) == ("O1", "O1")
    assert raised.event_time == at("11:10")
    assert raised.detected_at == at("11:10:01")
    assert raised.evidence.event_ids == [shipped["event_id"]]


def test_paid_at_11_09_59_raises_nothing() -> None:
    events = [ORDER, logistics("shipped", "O1", "11:00"), paid("O1", "11:09:59")]
    assert run(events, until="12:00").of(RULE) == []


def test_clock_exactly_at_11_10_raises_nothing() -> None:
    assert run([ORDER, logistics("shipped", "O1", "11:00")], until="11:10").of(RULE) == []


def test_paid_before_shipping_raises_nothing() -> None:
    by_payment = [ORDER, paid("O1", "10:00"), logistics("shipped", "O1", "11:00")]
    assert run(by_payment, until="12:00").of(RULE) == []
    by_status = [ORDER, status("O1", "paid", "10:00"), logistics("shipped", "O1", "11:00")]
    assert run(by_status, until="12:00").of(RULE) == []


def test_a_payment_after_the_grace_resolves_with_the_same_id() -> None:
    payment = paid("O1", "11:20")
    raised, resolved = run([ORDER, logistics("shipped", "O1", "11:00"), payment]).of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert payment["event_id"] in resolved.evidence.event_ids
    assert resolved.detected_at == at("11:20")


def test_status_paid_after_the_grace_resolves_too() -> None:
    events = [ORDER, logistics("shipped", "O1", "11:00"), status("O1", "paid", "11:20")]
    assert run(events).states(RULE) == ["raised", "resolved"]


def test_offsets_are_instants_paid_at_19_05_plus_08_is_in_time() -> None:
    events = [ORDER, logistics("shipped", "O1", "11:00"), paid("O1", "2026-11-20T19:05:00+08:00")]
    assert run(events, until="12:00").of(RULE) == []


def test_redelivered_and_rescanned_shipments_raise_once() -> None:
    shipped = logistics("shipped", "O1", "11:00")
    once = run([ORDER, shipped], until="11:11").of(RULE)
    again = run([ORDER, shipped, shipped, logistics("shipped", "O1", "11:02")], until="11:11")
    assert [e.exception_id for e in once] == [e.exception_id for e in again.of(RULE)]
    assert len(once) == 1


def test_open_for_15_minutes_escalates() -> None:
    events = [ORDER, logistics("shipped", "O1", "11:00")]
    assert run(events, until="11:25").states(RULE) == ["raised"]
    assert run(events, until="11:25:01").states(RULE) == ["raised", "escalated"]
