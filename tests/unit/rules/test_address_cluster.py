"""fraud.address_cluster: 5+ orders from 3+ customers to one normalized address within 24h."""

from datetime import datetime

from tests.factories import address, created, plus, run
from tests.unit.rules.rulebook import assert_card

RULE = "fraud.address_cluster"


def _order(n: int, at: str, customer: str, **addr: str) -> dict[str, object]:
    return created(f"O{n}", at, customer_id=customer, shipping_address=address(**addr))


def test_five_orders_from_three_customers_flag_every_order() -> None:
    customers = ["C1", "C2", "C3", "C1", "C2"]
    orders = [_order(n, f"10:0{n}", c) for n, c in enumerate(customers)]
    result = run(orders)
    flagged = result.of(RULE)
    assert sorted(e.subject for e in flagged) == ["O0", "O1", "O2", "O3", "O4"]
    for e in flagged:
        assert e.state == "raised" and e.order_id == e.subject
        assert_card(e, "fraud", "high", "risk")
        assert e.event_time == datetime.fromisoformat("2026-11-20T10:04:00Z")
        assert e.evidence.values["orders_in_window"] == 5
        assert e.evidence.values["customers_in_window"] == 3
        assert set(e.evidence.event_ids) == {o["event_id"] for o in orders}
        assert "Nanjing" not in e.model_dump_json() and "Zhang San" not in e.model_dump_json()
    assert len({e.evidence.values["address_hash"] for e in flagged}) == 1


def test_each_later_order_in_the_window_is_flagged_too() -> None:
    orders = [_order(n, f"10:0{n}", f"C{n % 3}") for n in range(5)]
    later = _order(9, "20:00", "C7")
    result = run([*orders, later])
    [late] = [e for e in result.of(RULE) if e.subject == "O9"]
    assert late.event_time == datetime.fromisoformat("2026-11-20T20:00:00Z")
    assert late.evidence.values["orders_in_window"] == 6
    assert later["event_id"] in late.evidence.event_ids
    assert len(result.of(RULE)) == 6, "each order once"


def test_spelling_variants_of_one_address_are_one_address() -> None:
    lines = [
        "100 Nanjing East Road",
        "100, nanjing east road.",
        "100 NANJING EAST ROAD",
        "１００ Nanjing East Road",
        "100  Nanjing-East-Road",
    ]
    orders = [_order(n, f"10:0{n}", f"C{n}", line1=line) for n, line in enumerate(lines)]
    assert len(run(orders).of(RULE)) == 5


def test_the_fifth_order_one_second_inside_24h_fires() -> None:
    first = "2026-11-20T10:00:00Z"
    orders = [_order(n, plus(first, hours=n), f"C{n % 3}") for n in range(4)]
    orders.append(_order(4, plus(first, hours=24, seconds=-1), "C1"))
    assert len(run(orders).of(RULE)) == 5


def test_the_fifth_order_24h_after_the_first_is_outside_the_window() -> None:
    first = "2026-11-20T10:00:00Z"
    orders = [_order(n, plus(first, hours=n), f"C{n % 3}") for n in range(4)]
    orders.append(_order(4, plus(first, hours=24), "C1"))
    assert run(orders).of(RULE) == []


def test_five_orders_from_only_two_customers_nothing() -> None:
    orders = [_order(n, f"10:0{n}", f"C{n % 2}") for n in range(5)]
    assert run(orders).of(RULE) == []


def test_four_orders_from_four_customers_nothing() -> None:
    orders = [_order(n, f"10:0{n}", f"C{n}") for n in range(4)]
    assert run(orders).of(RULE) == []


def test_neighbours_are_not_one_address() -> None:
    orders = [
        _order(n, f"10:0{n}", f"C{n}", line1=f"{100 + n} Nanjing East Road") for n in range(5)
    ]
    assert run(orders).of(RULE) == []


def test_a_redelivered_order_is_one_order() -> None:
    orders = [_order(n, f"10:0{n}", f"C{n % 3}") for n in range(4)]
    assert run(orders + orders).of(RULE) == []


def test_orders_without_a_street_are_not_a_cluster() -> None:
    orders = [_order(n, f"10:0{n}", f"C{n}", line1="") for n in range(6)]
    assert run(orders).of(RULE) == []


def test_a_notification_is_never_escalated_nor_resolved() -> None:
    orders = [_order(n, f"10:0{n}", f"C{n % 3}") for n in range(5)]
    result = run(orders, until=plus("10:00", days=2))
    assert {e.state for e in result.of(RULE)} == {"raised"}
