"""customer.invalid_address: an order created or re-addressed with an address that is not valid."""

from datetime import datetime

from tests.factories import address, address_changed, created, run
from tests.unit.rules.rulebook import assert_card

RULE = "customer.invalid_address"


def test_line1_of_4_characters_raises() -> None:
    order = created("O1", "10:00", shipping_address=address(line1="  No.5 "))
    result = run([order])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "customer_info", "medium", "customer_service")
    assert raised.event_time == datetime.fromisoformat("2026-11-20T10:00:00Z")
    assert raised.evidence.event_ids == [order["event_id"]]
    values = raised.evidence.values
    assert (values["country"], values["province"], values["city"]) == ("CN", "Shanghai", "Shanghai")
    assert len(str(values["address_hash"])) >= 8
    dumped = raised.model_dump_json()
    assert "No.5" not in dumped and "Zhang San" not in dumped


def test_a_blank_city_raises() -> None:
    assert run([created("O1", "10:00", shipping_address=address(city="   "))]).states(RULE) == [
        "raised"
    ]


def test_a_missing_province_raises() -> None:
    addr = address()
    del addr["province"]
    assert run([created("O1", "10:00", shipping_address=addr)]).states(RULE) == ["raised"]


def test_a_cn_postal_code_of_5_digits_raises() -> None:
    order = created("O1", "10:00", shipping_address=address(postal_code="20001"))
    assert run([order]).states(RULE) == ["raised"]


def test_line1_of_exactly_5_characters_is_valid() -> None:
    order = created("O1", "10:00", shipping_address=address(line1=" 南京东路1 "))
    assert run([order]).of(RULE) == []


def test_no_postal_code_is_valid_and_non_cn_postal_codes_are_free_form() -> None:
    no_code = created("O1", "10:00", shipping_address=address(postal_code=None))
    uk = address(country="GB", province="England", city="London", postal_code="SW1A 1AA")
    uk_order = created("O2", "10:00", shipping_address={**uk, "phone": "+447911123456"})
    assert run([no_code, uk_order]).of(RULE) == []


def test_a_valid_address_change_resolves_with_the_same_id() -> None:
    fix = address_changed("O1", "11:00")
    result = run([created("O1", "10:00", shipping_address=address(line1="abc")), fix])
    raised, resolved = result.of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert fix["event_id"] in resolved.evidence.event_ids


def test_an_invalid_address_change_raises_and_does_not_resolve() -> None:
    bad = address_changed("O1", "11:00", shipping_address=address(postal_code="ABCDEF"))
    result = run([created("O1", "10:00"), bad])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.evidence.event_ids == [bad["event_id"]]
    again = address_changed("O1", "12:00", shipping_address=address(line1=""))
    assert run([created("O1", "10:00"), bad, again]).states(RULE) == ["raised"]


def test_an_older_valid_address_read_late_does_not_resolve() -> None:
    bad = created("O1", "10:00", shipping_address=address(line1="abc"))
    stale_fix = address_changed("O1", "09:59")
    assert run([bad, stale_fix]).states(RULE) == ["raised"]


def test_open_for_4h_escalates() -> None:
    bad = created("O1", "10:00", shipping_address=address(line1="abc"))
    result = run([bad], until="14:00:01")
    assert [(e.state, e.escalation_level) for e in result.of(RULE)] == [
        ("raised", 0),
        ("escalated", 1),
    ]


def test_a_fix_read_before_the_bad_order_raises_and_resolves_with_the_same_ids() -> None:
    """Out of order: the fix happened later but was read first. The bad address held from
    10:00 to 11:00, so the result is what reading them in time order gives."""
    bad = created("O1", "10:00", shipping_address=address(line1="abc"))
    fix = address_changed("O1", "11:00")
    in_order = run([bad, fix]).of(RULE)
    shuffled = run([fix, bad]).of(RULE)
    assert [e.state for e in shuffled] == ["raised", "resolved"]
    assert [e.exception_id for e in shuffled] == [e.exception_id for e in in_order]
    assert fix["event_id"] in shuffled[1].evidence.event_ids


def test_a_bad_fix_read_before_the_bad_order_raises_once() -> None:
    bad = created("O1", "10:00", shipping_address=address(line1="abc"))
    worse = address_changed("O1", "11:00", shipping_address=address(line1=""))
    assert run([worse, bad]).states(RULE) == ["raised"]
