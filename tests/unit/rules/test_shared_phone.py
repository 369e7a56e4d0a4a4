"""fraud.shared_phone: one phone on orders of 3+ distinct customers within 24h."""

from datetime import datetime

from tests.factories import address, created, plus, run
from tests.unit.rules.rulebook import assert_card

RULE = "fraud.shared_phone"


def _order(n: int, at: str, customer: str, phone: str) -> dict[str, object]:
    addr = address(line1=f"{n} Huaihai Middle Road", phone=phone)
    return created(
        f"O{n}", at, customer_id=customer, customer_phone=f"1370000{n:04d}", shipping_address=addr
    )


def test_three_customers_one_phone_flag_every_order_masked() -> None:
    orders = [
        _order(1, "10:00", "C1", "13912345678"),
        _order(2, "11:00", "C2", "+86 139-1234-5678"),
        _order(3, "12:00", "C3", "139 1234 5678"),
    ]
    result = run(orders)
    flagged = result.of(RULE)
    assert sorted(e.subject for e in flagged) == ["O1", "O2", "O3"]
    for e in flagged:
        assert e.state == "raised" and e.order_id == e.subject
        assert_card(e, "fraud", "medium", "risk")
        assert e.event_time == datetime.fromisoformat("2026-11-20T12:00:00Z")
        assert e.evidence.values["customers_in_window"] == 3
        assert str(e.evidence.values["phone"]).endswith("5678")
        dumped = e.model_dump_json()
        assert "13912345678" not in dumped and "1234 5678" not in dumped


def test_a_fourth_customer_later_that_day_is_flagged_too() -> None:
    orders = [_order(n, f"1{n}:00", f"C{n}", "13912345678") for n in range(4)]
    result = run(orders)
    assert sorted(e.subject for e in result.of(RULE)) == ["O0", "O1", "O2", "O3"]
    [fourth] = [e for e in result.of(RULE) if e.subject == "O3"]
    assert fourth.event_time == datetime.fromisoformat("2026-11-20T13:00:00Z")


def test_third_customer_one_second_inside_24h_fires() -> None:
    orders = [
        _order(1, "10:00", "C1", "13912345678"),
        _order(2, "11:00", "C2", "13912345678"),
        _order(3, plus("10:00", hours=24, seconds=-1), "C3", "13912345678"),
    ]
    assert len(run(orders).of(RULE)) == 3


def test_third_customer_24h_after_the_first_is_outside_the_window() -> None:
    orders = [
        _order(1, "10:00", "C1", "13912345678"),
        _order(2, "11:00", "C2", "13912345678"),
        _order(3, plus("10:00", hours=24), "C3", "13912345678"),
    ]
    assert run(orders).of(RULE) == []


def test_many_orders_from_two_customers_nothing() -> None:
    orders = [_order(n, f"1{n}:00", f"C{n % 2}", "13912345678") for n in range(6)]
    assert run(orders).of(RULE) == []


def test_three_customers_with_three_phones_nothing() -> None:
    orders = [_order(n, f"1{n}:00", f"C{n}", f"1391234567{n}") for n in range(3)]
    assert run(orders).of(RULE) == []
