"""fraud.abnormal_quantity: an order line with more than 20 units."""

from datetime import datetime

from tests.factories import created, plus, run
from tests.unit.rules.rulebook import assert_card

RULE = "fraud.abnormal_quantity"


def _line(sku: str, quantity: int) -> dict[str, object]:
    return {"sku": sku, "quantity": quantity, "unit_price": "1.00"}


def test_21_units_of_one_sku_raises_medium_for_risk() -> None:
    order = created("O1", "10:00", items=[_line("SKU-1", 2), _line("SKU-9", 21)])
    result = run([order])
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "fraud", "medium", "risk")
    assert raised.event_time == datetime.fromisoformat("2026-11-20T10:00:00Z")
    assert raised.evidence.event_ids == [order["event_id"]]
    assert raised.sku == "SKU-9"
    assert raised.evidence.values["quantity"] == 21
    assert raised.evidence.values["max_quantity"] == 20


def test_several_lines_over_the_limit_raise_once_naming_the_largest() -> None:
    order = created("O1", "10:00", items=[_line("A", 50), _line("B", 500), _line("C", 1)])
    [raised] = run([order]).of(RULE)
    assert raised.sku == "B" and raised.evidence.values["lines_over_limit"] == 2


def test_exactly_20_units_nothing() -> None:
    assert run([created("O1", "10:00", items=[_line("SKU-1", 20)])]).of(RULE) == []


def test_many_lines_of_20_are_not_one_line_over_20() -> None:
    items = [_line(f"SKU-{i}", 20) for i in range(5)]
    assert run([created("O1", "10:00", items=items)]).of(RULE) == []


def test_a_notification_is_never_escalated_nor_resolved() -> None:
    order = created("O1", "10:00", items=[_line("SKU-1", 99)])
    assert run([order, order], until=plus("10:00", days=1)).states(RULE) == ["raised"]
