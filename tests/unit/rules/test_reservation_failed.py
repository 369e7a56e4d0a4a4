"""inventory.reservation_failed: a reservation refused for a reason other than stock."""

import pytest

from tests.factories import created, reservation_failed, reserved, run
from tests.unit.rules.rulebook import assert_card, at

RULE = "inventory.reservation_failed"
ORDER = created("O1", "09:50")


@pytest.mark.parametrize("reason", ["lock_timeout", "conflict", "other"])
def test_refused_for_a_non_stock_reason_raises_at_once(reason: str) -> None:
    refusal = reservation_failed("O1", "10:01", reason, sku="SKU-7", warehouse_id="W2")
    [raised] = run([ORDER, refusal]).of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "inventory", "high", "warehouse")
    assert (raised.subject, raised.order_id) == ("O1", "O1")
    assert (raised.sku, raised.warehouse_id) == ("SKU-7", "W2")
    assert raised.event_time == at("10:01") == raised.detected_at
    assert raised.evidence.event_ids == [refusal["event_id"]]
    assert raised.evidence.values["reason"] == reason


def test_insufficient_stock_is_not_this_rule() -> None:
    assert run([ORDER, reservation_failed("O1", "10:01", "insufficient_stock")]).of(RULE) == []


def test_a_successful_reservation_raises_nothing() -> None:
    assert run([ORDER, reserved("O1", "10:01")]).of(RULE) == []


@pytest.mark.parametrize("available_after", [4, 0, -1])
def test_a_later_reservation_of_that_sku_resolves_with_the_same_id(available_after: int) -> None:
    retry = reserved("O1", "10:03", sku="SKU-1", available_after=available_after)
    events = [ORDER, reservation_failed("O1", "10:01", "lock_timeout", sku="SKU-1"), retry]
    raised, resolved = run(events).of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert retry["event_id"] in resolved.evidence.event_ids


def test_a_retry_that_oversells_resolves_this_and_raises_oversold() -> None:
    retry = reserved("O1", "10:03", sku="SKU-1", available_after=-1)
    result = run([ORDER, reservation_failed("O1", "10:01", "conflict", sku="SKU-1"), retry])
    assert result.states(RULE) == ["raised", "resolved"]
    assert result.states("inventory.oversold") == ["raised"]


def test_reservations_that_do_not_resolve_it() -> None:
    refusal = reservation_failed("O1", "10:01", "lock_timeout", sku="SKU-1")
    other_sku = reserved("O1", "10:05", sku="SKU-2")
    earlier = reserved("O1", "10:00:30", sku="SKU-1")  # read late
    other_order = reserved("O2", "10:05", sku="SKU-1")
    for follow_up in (other_sku, earlier, other_order):
        assert run([ORDER, refusal, follow_up]).states(RULE) == ["raised"]


def test_redelivered_refusal_raises_once() -> None:
    refusal = reservation_failed("O1", "10:01", "lock_timeout")
    once = run([ORDER, refusal]).of(RULE)
    again = run([ORDER, refusal, refusal]).of(RULE)
    assert [e.exception_id for e in once] == [e.exception_id for e in again]
    assert len(once) == 1


def test_open_for_an_hour_escalates() -> None:
    events = [ORDER, reservation_failed("O1", "10:01", "lock_timeout")]
    assert run(events, until="11:01").states(RULE) == ["raised"]
    assert run(events, until="11:01:01").states(RULE) == ["raised", "escalated"]
