"""logistics.repeated_rejections: a customer's second order whose delivery is rejected within 30
days is flagged (judged once per order, at its first ``logistics.exception`` of kind rejected)."""

from __future__ import annotations

from typing import Any

from tests.factories import created, logistics, plus, run
from tests.unit.rules.helpers import carrier_exception
from tests.unit.rules.rulebook import assert_card

RULE = "logistics.repeated_rejections"
DAY0 = "2026-11-01T10:00:00Z"


def _rejected(oid: str, day: float, customer: str = "C7") -> list[dict[str, Any]]:
    at = plus(DAY0, days=day)
    return [
        created(oid, at, customer_id=customer),
        logistics("shipped", oid, plus(at, hours=1)),
        carrier_exception(oid, plus(at, days=2), "rejected"),
    ]


def test_the_second_rejection_within_30_days_is_flagged() -> None:
    result = run(_rejected("O1", 0) + _rejected("O2", 5))
    [raised] = result.of(RULE)
    assert raised.subject == "O2" and raised.state == "raised"
    assert_card(raised, "fraud", "medium", "risk")
    assert raised.evidence.values["orders_in_window"] == 2
    # each rejection is also its own logistics.rejected notification
    assert [e.subject for e in result.of("logistics.rejected")] == ["O1", "O2"]


def test_one_rejection_is_a_near_miss() -> None:
    assert run(_rejected("O1", 0)).of(RULE) == []


def test_two_rejections_of_one_order_count_once() -> None:
    events = _rejected("O1", 0)
    events.append(carrier_exception("O1", plus(DAY0, days=3), "rejected"))
    assert run(events).of(RULE) == []


def test_other_kinds_of_carrier_exception_do_not_count() -> None:
    events = _rejected("O1", 0)
    events += [
        created("O2", plus(DAY0, days=1)),
        carrier_exception("O2", plus(DAY0, days=2), "lost"),
    ]
    assert run(events).of(RULE) == []


def test_the_window_slides_past() -> None:
    # rejections at day 2 and day 32: 30 days apart exactly, the older is outside (t - 30d, t]
    assert run(_rejected("O1", 0) + _rejected("O2", 30)).of(RULE) == []
    assert [e.subject for e in run(_rejected("O1", 0) + _rejected("O2", 29.9)).of(RULE)] == ["O2"]


def test_different_customers_are_counted_apart() -> None:
    assert run(_rejected("O1", 0) + _rejected("O2", 1, customer="C8")).of(RULE) == []
