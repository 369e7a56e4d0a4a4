"""fraud.blacklisted: the order's customer, phone or normalized address is on the blacklist."""

from datetime import datetime

import orjson

from orderwatch.engine import Engine
from orderwatch.rulefiles import load_catalog
from tests.factories import address, blacklist, created, decode_event, plus, run, to_jsonl
from tests.unit.rules.rulebook import assert_card

RULE = "fraud.blacklisted"


def test_a_blacklisted_customer_raises_critical_for_risk() -> None:
    order = created("O1", "10:00", customer_id="C-BAD")
    result = run([blacklist("customer_id", "C-BAD"), order])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "fraud", "critical", "risk")
    assert raised.event_time == datetime.fromisoformat("2026-11-20T10:00:00Z")
    assert raised.evidence.event_ids == [order["event_id"]]
    assert raised.evidence.values["matched"] == "customer_id"


def test_a_blacklisted_phone_matches_however_it_is_written() -> None:
    order = created("O1", "10:00", shipping_address=address(phone="+86 139-0000-1111"))
    result = run([blacklist("phone", "13900001111"), order])
    [raised] = result.of(RULE)
    assert raised.evidence.values["matched"] == "phone"
    assert "13900001111" not in raised.model_dump_json()


def test_the_customer_phone_counts_as_well_as_the_shipping_phone() -> None:
    order = created("O1", "10:00", customer_phone="139 0000 2222")
    assert run([blacklist("phone", "+8613900002222"), order]).states(RULE) == ["raised"]


def test_a_blacklisted_address_matches_in_normalized_form() -> None:
    entry = "cn|shanghai|shanghai|huangpu|100nanjingeastroad"
    order = created("O1", "10:00", shipping_address=address(line1="100, NANJING East Road."))
    result = run([blacklist("address", entry), order])
    [raised] = result.of(RULE)
    assert raised.evidence.values["matched"] == "address"
    assert "Nanjing" not in raised.model_dump_json().replace("nanjing", "")


def test_an_address_entry_written_like_an_address_matches_too() -> None:
    entry = "CN | Shanghai | Shanghai | Huangpu | 100 Nanjing East Road"
    assert run([blacklist("address", entry), created("O1", "10:00")]).states(RULE) == ["raised"]


def test_several_matches_raise_one_exception_naming_each() -> None:
    events = [blacklist("customer_id", "C1"), blacklist("phone", "13812345678")]
    [raised] = run([*events, created("O1", "10:00")]).of(RULE)
    assert raised.evidence.values["matched"] == "customer_id, phone"


def test_another_customer_phone_and_address_nothing() -> None:
    events = [
        blacklist("customer_id", "C2"),
        blacklist("phone", "13812345679"),
        blacklist("address", "cn|shanghai|shanghai|huangpu|101nanjingeastroad"),
        created("O1", "10:00"),
    ]
    assert run(events).of(RULE) == []


def test_an_entry_added_after_the_order_was_read_does_not_reach_back() -> None:
    order = created("O1", "10:00", customer_id="C-BAD")
    assert run([order, blacklist("customer_id", "C-BAD", at="10:05")]).of(RULE) == []


def test_a_removed_entry_no_longer_matches() -> None:
    events = [
        blacklist("customer_id", "C-BAD", at="09:00"),
        blacklist("customer_id", "C-BAD", at="09:30", removed=True),
        created("O1", "10:00", customer_id="C-BAD"),
    ]
    assert run(events).of(RULE) == []


def test_a_redelivered_old_add_does_not_undo_a_removal() -> None:
    add = blacklist("customer_id", "C-BAD", at="09:00")
    events = [
        add,
        blacklist("customer_id", "C-BAD", at="09:30", removed=True),
        add,
        created("O1", "10:00", customer_id="C-BAD"),
    ]
    assert run(events).of(RULE) == []


def test_a_redelivered_order_after_a_new_entry_is_still_the_order_as_first_read() -> None:
    order = created("O1", "10:00", customer_id="C-BAD")
    events = [order, blacklist("customer_id", "C-BAD", at="10:05"), order]
    assert run(events).of(RULE) == []


def test_a_notification_is_never_escalated_nor_resolved() -> None:
    events = [blacklist("customer_id", "C-BAD"), created("O1", "10:00", customer_id="C-BAD")]
    assert run(events, until=plus("10:00", days=1)).states(RULE) == ["raised"]


def test_the_blacklist_and_its_history_survive_a_restart() -> None:
    first = Engine(load_catalog())
    add = decode_event(to_jsonl([blacklist("customer_id", "C-BAD", at="09:00")]).strip())
    remove = decode_event(
        to_jsonl([blacklist("customer_id", "C-BAD", at="09:30", removed=True)]).strip()
    )
    first.step(add, add.occurred_at)
    first.step(remove, remove.occurred_at)
    state = first.take_dirty()["*"]
    assert state is not None
    again = Engine(load_catalog())
    again.restore("*", orjson.loads(orjson.dumps(state)))
    again.step(add, remove.occurred_at)  # the old add, re-delivered after the restart
    assert again.blacklist["customer_id"] == set()
