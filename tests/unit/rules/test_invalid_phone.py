"""customer.invalid_phone: the shipping phone is not a CN mobile (CN) or E.164 (elsewhere)."""

from datetime import datetime

from tests.factories import address, address_changed, created, run
from tests.unit.rules.rulebook import assert_card

RULE = "customer.invalid_phone"


def test_a_10_digit_cn_mobile_raises_masked() -> None:
    order = created("O1", "10:00", shipping_address=address(phone="1381234567"))
    result = run([order])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "customer_info", "medium", "customer_service")
    assert raised.event_time == datetime.fromisoformat("2026-11-20T10:00:00Z")
    assert raised.evidence.event_ids == [order["event_id"]]
    assert raised.evidence.values["phone"] == "******4567"
    assert "1381234567" not in raised.model_dump_json()


def test_a_cn_number_starting_12_raises() -> None:
    order = created("O1", "10:00", shipping_address=address(phone="12812345678"))
    assert run([order]).states(RULE) == ["raised"]


def test_a_foreign_number_without_plus_raises() -> None:
    addr = address(country="US", province="CA", city="San Francisco", phone="4155550100")
    assert run([created("O1", "10:00", shipping_address=addr)]).states(RULE) == ["raised"]


def test_a_missing_phone_raises() -> None:
    addr = address()
    del addr["phone"]
    assert run([created("O1", "10:00", shipping_address=addr)]).states(RULE) == ["raised"]


def test_valid_forms_raise_nothing() -> None:
    phones = ["13812345678", "+8613812345678", "+86 138-1234-5678", "138 1234 5678"]
    orders = [
        created(f"O{i}", "10:00", shipping_address=address(phone=p)) for i, p in enumerate(phones)
    ]
    us = address(country="US", province="CA", city="San Francisco", phone="+1 415-555-0100")
    orders.append(created("O9", "10:00", shipping_address=us))
    assert run(orders).of(RULE) == []


def test_e164_length_bounds_outside_cn() -> None:
    def order(oid: str, phone: str) -> dict[str, object]:
        addr = address(country="DE", province="Berlin", city="Berlin", phone=phone)
        return created(oid, "10:00", shipping_address=addr)

    result = run(
        [
            order("SHORT", "+1234567"),  # 7 digits
            order("MIN", "+12345678"),  # 8 digits
            order("MAX", "+123456789012345"),  # 15 digits
            order("LONG", "+1234567890123456"),  # 16 digits
        ]
    )
    assert sorted(e.subject for e in result.of(RULE)) == ["LONG", "SHORT"]


def test_a_plus86_number_follows_cn_rules_whatever_the_country() -> None:
    addr = address(country="SG", province="SG", city="Singapore", phone="+86 12345678")
    assert run([created("O1", "10:00", shipping_address=addr)]).states(RULE) == ["raised"]


def test_a_valid_phone_change_resolves_with_the_same_id() -> None:
    fix = address_changed("O1", "11:00", shipping_address=address(phone="+86 139 0000 1111"))
    result = run([created("O1", "10:00", shipping_address=address(phone="000")), fix])
    raised, resolved = result.of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert fix["event_id"] in resolved.evidence.event_ids
    assert "13900001111" not in resolved.model_dump_json()


def test_an_address_change_that_keeps_a_bad_phone_does_not_resolve() -> None:
    bad = created("O1", "10:00", shipping_address=address(phone="000"))
    still_bad = address_changed("O1", "11:00", shipping_address=address(phone="0000"))
    assert run([bad, still_bad]).states(RULE) == ["raised"]


def test_a_fix_read_before_the_bad_order_raises_and_resolves() -> None:
    bad = created("O1", "10:00", shipping_address=address(phone="000"))
    fix = address_changed("O1", "11:00", shipping_address=address(phone="+86 139 0000 1111"))
    shuffled = run([fix, bad]).of(RULE)
    assert [e.state for e in shuffled] == ["raised", "resolved"]
    assert shuffled[0].exception_id == run([bad, fix]).of(RULE)[0].exception_id
