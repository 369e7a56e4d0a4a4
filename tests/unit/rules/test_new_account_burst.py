"""fraud.new_account_burst: an account younger than 7 days places 5+ orders within 1 hour."""

from datetime import datetime

from tests.factories import address, created, plus, run
from tests.unit.rules.rulebook import assert_card

RULE = "fraud.new_account_burst"
SIGNUP = "2026-11-15T10:00:00Z"  # five days before the test day


def _order(n: int, at: str, customer: str = "NEW1", signup: str = SIGNUP) -> dict[str, object]:
    addr = address(line1=f"{n} Huaihai Middle Road", phone=f"1391234{n:04d}")
    return created(
        f"O{n}", at, customer_id=customer, account_created_at=signup, shipping_address=addr
    )


def test_five_orders_in_20_minutes_from_a_5_day_old_account_flag_all() -> None:
    orders = [_order(n, f"10:{n * 5:02d}") for n in range(5)]
    result = run(orders)
    flagged = result.of(RULE)
    assert sorted(e.subject for e in flagged) == [f"O{n}" for n in range(5)]
    for e in flagged:
        assert e.state == "raised" and e.order_id == e.subject
        assert_card(e, "fraud", "high", "risk")
        assert e.event_time == datetime.fromisoformat("2026-11-20T10:20:00Z")
        assert e.evidence.values["customer_id"] == "NEW1"
        assert e.evidence.values["orders_in_window"] == 5


def test_a_sixth_order_in_the_hour_is_flagged_too() -> None:
    orders = [_order(n, f"10:{n * 5:02d}") for n in range(6)]
    result = run(orders)
    assert len(result.of(RULE)) == 6
    [sixth] = [e for e in result.of(RULE) if e.subject == "O5"]
    assert sixth.event_time == datetime.fromisoformat("2026-11-20T10:25:00Z")


def test_five_orders_within_59m59s_fire() -> None:
    orders = [_order(n, plus("10:00", minutes=14 * n)) for n in range(4)]
    orders.append(_order(4, plus("10:00", minutes=59, seconds=59)))
    assert len(run(orders).of(RULE)) == 5


def test_five_orders_spanning_exactly_one_hour_nothing() -> None:
    orders = [_order(n, plus("10:00", minutes=15 * n)) for n in range(5)]
    assert run(orders).of(RULE) == []


def test_an_account_exactly_7_days_old_is_not_new() -> None:
    signup = plus("10:00", days=-7)
    orders = [_order(n, f"10:0{n}", signup=signup) for n in range(5)]
    assert run(orders).of(RULE) == []


def test_an_account_one_second_younger_than_7_days_is_new() -> None:
    signup = plus("10:04", days=-7, seconds=1)  # the last order is placed at 10:04
    orders = [_order(n, f"10:0{n}", signup=signup) for n in range(5)]
    assert len(run(orders).of(RULE)) == 5


def test_four_orders_nothing() -> None:
    orders = [_order(n, f"10:0{n}") for n in range(4)]
    assert run(orders).of(RULE) == []


def test_five_orders_from_different_new_accounts_nothing() -> None:
    orders = [_order(n, f"10:0{n}", customer=f"NEW{n}") for n in range(5)]
    assert run(orders).of(RULE) == []


def test_an_old_account_ordering_a_lot_is_not_a_new_account_burst() -> None:
    orders = [_order(n, f"10:0{n}", signup="2020-01-01T00:00:00Z") for n in range(8)]
    assert run(orders).of(RULE) == []
