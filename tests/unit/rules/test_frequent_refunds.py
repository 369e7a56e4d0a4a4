"""fraud.frequent_refunds: a customer's third order first refunded within 30 days is flagged.

Each order is judged once, when its first refund (a ``payment.refunded`` or the status
``refunded``, whichever is read first) is read, counting the customer's orders first refunded in
``(t - 30d, t]``; an order whose ``order.created`` comes later is counted when it does.
"""

from __future__ import annotations

from typing import Any

from tests.factories import created, paid, plus, refunded, run, status
from tests.unit.rules.rulebook import assert_card

RULE = "fraud.frequent_refunds"
DAY0 = "2026-11-01T10:00:00Z"


def _order(oid: str, day: float, customer: str = "C7", by: str = "payment") -> list[dict[str, Any]]:
    """An order of ``customer`` created on ``DAY0 + day`` and refunded an hour later."""
    at = plus(DAY0, days=day)
    events = [
        created(oid, at, customer_id=customer),
        paid(oid, plus(at, minutes=1), payment_id=f"P-{oid}"),
    ]
    if by == "payment":
        events.append(refunded(oid, plus(at, hours=1), payment_id=f"P-{oid}"))
    else:
        events.append(status(oid, "refunded", plus(at, hours=1)))
    return events


def test_the_third_refunded_order_within_30_days_is_flagged() -> None:
    events = _order("O1", 0) + _order("O2", 10) + _order("O3", 20, by="status")
    result = run(events)
    [raised] = result.of(RULE)
    assert raised.state == "raised" and raised.subject == "O3" and raised.order_id == "O3"
    assert_card(raised, "fraud", "medium", "risk")
    assert raised.evidence.values["orders_in_window"] == 3
    assert raised.evidence.values["order_ids"] == "O1, O2, O3"
    assert raised.evidence.values["customer_id"] == "C7"
    assert raised.event_time.isoformat() == plus(DAY0, days=20, hours=1).replace("Z", "+00:00")


def test_a_fourth_one_is_flagged_too_each_order_once() -> None:
    events = _order("O1", 0) + _order("O2", 1) + _order("O3", 2) + _order("O4", 3)
    assert [e.subject for e in run(events).of(RULE)] == ["O3", "O4"]


def test_two_refunded_orders_are_a_near_miss() -> None:
    assert run(_order("O1", 0) + _order("O2", 1)).of(RULE) == []


def test_other_customers_orders_do_not_count() -> None:
    events = _order("O1", 0) + _order("O2", 1, customer="C8") + _order("O3", 2)
    assert run(events).of(RULE) == []


def test_the_window_slides_past_the_oldest_refund() -> None:
    # O1 refunded at day 0 + 1h; O3 at day 30 + 1h: exactly 30 days later, outside (t - 30d, t]
    events = _order("O1", 0) + _order("O2", 15) + _order("O3", 30)
    assert run(events).of(RULE) == []
    # a second earlier: inside
    late = _order("O1", 0) + _order("O2", 15) + _order("O3", 30 - 1 / 86400)
    assert [e.subject for e in run(late).of(RULE)] == ["O3"]


def test_an_order_counts_once_however_many_refunds_it_gets() -> None:
    events = _order("O1", 0) + _order("O2", 1)
    events.append(status("O2", "refunded", plus(DAY0, days=1, hours=2)))
    events.append(refunded("O1", plus(DAY0, hours=3), payment_id="P-x"))
    assert run(events).of(RULE) == []


def test_a_re_delivered_refund_raises_nothing_new() -> None:
    events = _order("O1", 0) + _order("O2", 1) + _order("O3", 2)
    events += [events[-1], events[2]]
    assert run(events).states(RULE) == ["raised"]


def test_a_refund_read_before_its_order_created_counts_when_the_order_is_read() -> None:
    first, second = _order("O1", 0), _order("O2", 1)
    third = _order("O3", 2)
    # O3's refund and payment before its order.created
    events = first + second + [third[1], third[2], third[0]]
    [raised] = run(events).of(RULE)
    assert raised.subject == "O3"


def test_the_outcome_does_not_depend_on_the_order_refunds_are_read_in() -> None:
    # O3 (day 2) and O2 (day 1) are read before O1 (day 0): when O1 is read, O3's window
    # (day 2 - 30d, day 2] holds all three, as it would have read in time order
    events = _order("O3", 2) + _order("O2", 1) + _order("O1", 0)
    assert [e.subject for e in run(events).of(RULE)] == ["O3"]
    in_order = _order("O1", 0) + _order("O2", 1) + _order("O3", 2)
    assert [e.subject for e in run(in_order).of(RULE)] == ["O3"]


def test_disabled_rule_raises_nothing(tmp_path: Any) -> None:
    import shutil
    from pathlib import Path

    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parents[3] / "rules", rules)
    path = rules / f"{RULE}.yaml"
    path.write_text(path.read_text().replace("enabled: true", "enabled: false"))
    events = _order("O1", 0) + _order("O2", 1) + _order("O3", 2)
    assert run(events, rules_dir=rules).of(RULE) == []
