"""inventory.oversold: a paid order is refused for insufficient stock, or stock goes negative."""

from tests.factories import created, paid, reservation_failed, reserved, run, status
from tests.unit.rules.rulebook import assert_card, at

RULE = "inventory.oversold"
PAID = [created("O1", "09:50"), paid("O1", "10:00"), status("O1", "paid", "10:00:02")]


def test_paid_order_refused_for_insufficient_stock_raises_at_once() -> None:
    refusal = reservation_failed(
        "O1", "10:01", "insufficient_stock", sku="SKU-7", warehouse_id="W2"
    )
    result = run([*PAID, refusal])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "inventory", "critical", "warehouse")
    assert (raised.subject, raised.order_id) == ("O1", "O1")
    assert (raised.sku, raised.warehouse_id) == ("SKU-7", "W2")
    assert raised.event_time == at("10:01") == raised.detected_at
    assert raised.evidence.event_ids == [refusal["event_id"]]


def test_a_reservation_leaving_minus_one_raises_even_unpaid() -> None:
    negative = reserved("O1", "10:01", available_after=-1)
    [raised] = run([created("O1", "09:50"), negative]).of(RULE)
    assert raised.event_time == at("10:01")
    assert raised.evidence.event_ids == [negative["event_id"]]
    assert raised.evidence.values["available_after"] == -1


def test_a_reservation_leaving_zero_raises_nothing() -> None:
    assert run([*PAID, reserved("O1", "10:01", available_after=0)]).of(RULE) == []


def test_unpaid_order_refused_for_insufficient_stock_raises_nothing() -> None:
    events = [created("O1", "09:50"), reservation_failed("O1", "09:51", "insufficient_stock")]
    assert run([*events, status("O1", "cancelled", "10:20")], until="12:00").of(RULE) == []


def test_refused_unpaid_then_paid_raises_when_it_becomes_paid() -> None:
    events = [created("O1", "09:50"), reservation_failed("O1", "09:51", "insufficient_stock")]
    [raised] = run([*events, paid("O1", "10:00")]).of(RULE)
    assert raised.event_time == at("10:00")


def test_refused_unpaid_then_reserved_elsewhere_then_paid_raises_nothing() -> None:
    events = [
        created("O1", "09:50"),
        reservation_failed("O1", "09:51", "insufficient_stock", warehouse_id="W1"),
        reserved("O1", "09:52", warehouse_id="W2"),
        paid("O1", "10:00"),
    ]
    assert run(events).of(RULE) == []


def test_other_refusal_reasons_are_not_oversold() -> None:
    assert run([*PAID, reservation_failed("O1", "10:01", "lock_timeout")]).of(RULE) == []


def test_a_later_successful_reservation_of_that_sku_resolves_with_the_same_id() -> None:
    again = reserved("O1", "10:05", sku="SKU-1", available_after=3)
    events = [*PAID, reservation_failed("O1", "10:01", "insufficient_stock", sku="SKU-1"), again]
    raised, resolved = run(events).of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert again["event_id"] in resolved.evidence.event_ids
    assert resolved.sku == "SKU-1"


def test_reservations_that_do_not_resolve_it() -> None:
    refusal = reservation_failed("O1", "10:01", "insufficient_stock", sku="SKU-1")
    other_sku = reserved("O1", "10:05", sku="SKU-2", available_after=3)
    earlier = reserved("O1", "10:00:30", sku="SKU-1", available_after=3)  # read late
    still_negative = reserved("O1", "10:06", sku="SKU-1", available_after=-2)
    for follow_up in (other_sku, earlier, still_negative):
        assert run([*PAID, refusal, follow_up]).states(RULE) == ["raised"]


def test_redelivered_refusal_raises_once() -> None:
    refusal = reservation_failed("O1", "10:01", "insufficient_stock")
    once = run([*PAID, refusal]).of(RULE)
    again = run([*PAID, refusal, refusal, *PAID]).of(RULE)
    assert [e.exception_id for e in once] == [e.exception_id for e in again]
    assert len(once) == 1


def test_open_for_15_minutes_escalates() -> None:
    events = [*PAID, reservation_failed("O1", "10:01", "insufficient_stock")]
    assert run(events, until="10:16").states(RULE) == ["raised"]
    assert run(events, until="10:16:01").states(RULE) == ["raised", "escalated"]
