"""customer.unreachable: carrier cannot reach address or phone; a later address change fixes it."""

from datetime import datetime

from tests.factories import address, address_changed, created, logistics, paid, plus, run
from tests.unit.rules.helpers import carrier_exception
from tests.unit.rules.rulebook import assert_card

RULE = "customer.unreachable"


def _shipped() -> list[dict[str, object]]:
    return [created("O1", "09:00"), paid("O1", "09:05"), logistics("shipped", "O1", "10:00")]


def test_address_unreachable_raises_high_for_customer_service() -> None:
    report = carrier_exception("O1", "15:00", "address_unreachable", detail="no such building")
    result = run([*_shipped(), report])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "customer_info", "high", "customer_service")
    assert raised.event_time == datetime.fromisoformat("2026-11-20T15:00:00Z")
    assert raised.evidence.event_ids == [report["event_id"]]
    assert raised.evidence.values["kind"] == "address_unreachable"


def test_phone_unreachable_raises() -> None:
    result = run([*_shipped(), carrier_exception("O1", "15:00", "phone_unreachable")])
    [raised] = result.of(RULE)
    assert raised.evidence.values["kind"] == "phone_unreachable"


def test_other_carrier_exceptions_are_not_unreachable() -> None:
    events = _shipped() + [
        carrier_exception("O1", "15:00", kind) for kind in ("rejected", "other", "lost")
    ]
    assert run(events).of(RULE) == []


def test_an_address_change_after_the_report_resolves_with_the_same_id() -> None:
    change = address_changed("O1", "16:00", shipping_address=address(line1="200 Nanjing West Rd"))
    result = run([*_shipped(), carrier_exception("O1", "15:00", "phone_unreachable"), change])
    raised, resolved = result.of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert change["event_id"] in resolved.evidence.event_ids
    assert "Nanjing West" not in resolved.model_dump_json()


def test_an_address_change_from_before_the_report_does_not_resolve() -> None:
    early = address_changed("O1", "14:59:59")
    result = run([*_shipped(), carrier_exception("O1", "15:00", "address_unreachable"), early])
    assert result.states(RULE) == ["raised"]


def test_unresolved_for_1h_escalates() -> None:
    report = carrier_exception("O1", "15:00", "address_unreachable")
    result = run([*_shipped(), report], until=plus("15:00", hours=1, seconds=1))
    assert [(e.state, e.escalation_level) for e in result.of(RULE)] == [
        ("raised", 0),
        ("escalated", 1),
    ]


def test_one_second_before_1h_no_escalation() -> None:
    report = carrier_exception("O1", "15:00", "address_unreachable")
    result = run([*_shipped(), report], until=plus("15:00", hours=1, seconds=-1))
    assert result.states(RULE) == ["raised"]


def test_a_report_read_after_a_later_address_change_is_already_handled() -> None:
    change = address_changed("O1", "16:00")
    report = carrier_exception("O1", "15:00", "address_unreachable")
    result = run([*_shipped(), change, report], until=plus("15:00", hours=5))
    assert result.of(RULE) == []


def test_a_failure_after_the_change_read_before_it_is_raised_on_its_own() -> None:
    """Time order: failed 10:02, failed again 10:04, address changed 10:03. Read in that file
    order the 10:04 report arrives while 10:02's is open; once the change resolves that one,
    10:04's stands on its own. A re-delivery of it afterwards changes nothing (it was found by
    the re-delivery property)."""
    first = carrier_exception("O1", "10:02", "address_unreachable")
    second = carrier_exception("O1", "10:04", "address_unreachable")
    change = address_changed("O1", "10:03")
    events = [created("O1", "10:00"), first, second, change]
    result = run(events).of(RULE)
    assert [(e.state, e.evidence.event_ids[0]) for e in result] == [
        ("raised", first["event_id"]),
        ("resolved", first["event_id"]),
        ("raised", second["event_id"]),
    ]
    assert run([*events, second]).of(RULE) == result


def test_a_redelivered_older_change_does_not_raise_a_failure_a_later_change_settled() -> None:
    """Failed 08:03, address changed 08:01 and 08:05: the 08:05 change was read before the
    report, so the report raised nothing. Reading the 08:01 change again must not raise it (found
    by the re-delivery property: the older change looked like a change the failure came after)."""
    early = address_changed("O1", "08:01")
    events = [
        early,
        created("O1", "08:00"),
        address_changed("O1", "08:05"),
        carrier_exception("O1", "08:03", "address_unreachable"),
    ]
    assert run(events).of(RULE) == []
    assert run([*events, early]).of(RULE) == []
