"""logistics.delivery_delayed: shipped and not delivered by the promise, or by shipped + 7 days."""

from datetime import datetime

from tests.factories import created, logistics, paid, plus, run
from tests.unit.rules.rulebook import assert_card

RULE = "logistics.delivery_delayed"
SHIPPED = "2026-11-21T08:00:00Z"
PROMISE = "2026-11-24T18:00:00Z"


def _order(promise: str | None, until: str, *more: dict[str, object]) -> list[dict[str, object]]:
    """Shipped on the 21st, then a scan every day before ``until`` so tracking never goes stale."""
    end = datetime.fromisoformat(until)
    scans = [
        logistics("scanned", "O1", plus(SHIPPED, days=d))
        for d in range(1, 30)
        if datetime.fromisoformat(plus(SHIPPED, days=d)) < end
    ]
    return [
        created("O1", "09:00", promised_delivery_by=promise),
        paid("O1", "09:05"),
        logistics("shipped", "O1", SHIPPED),
        *scans,
        *more,  # type: ignore[list-item]
    ]


def test_promised_by_the_24th_not_delivered_raises_at_the_promise() -> None:
    until = plus(PROMISE, seconds=1)
    result = run(_order(PROMISE, until), until=until)
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "logistics", "medium", "logistics")
    assert raised.event_time == datetime.fromisoformat(PROMISE)
    assert raised.evidence.values["promised_by"] == PROMISE
    assert raised.evidence.values["shipped_at"] == SHIPPED


def test_without_a_promise_raises_7_days_after_shipping() -> None:
    deadline = plus(SHIPPED, days=7)
    until = plus(deadline, seconds=1)
    result = run(_order(None, until), until=until)
    [raised] = result.of(RULE)
    assert raised.event_time == datetime.fromisoformat(deadline)
    assert raised.evidence.values["promised_by"] == deadline


def test_one_second_before_the_promise_nothing() -> None:
    until = plus(PROMISE, seconds=-1)
    result = run(_order(PROMISE, until), until=until)
    assert result.of(RULE) == []


def test_one_second_before_7_days_nothing() -> None:
    until = plus(SHIPPED, days=7, seconds=-1)
    result = run(_order(None, until), until=until)
    assert result.of(RULE) == []


def test_a_promise_later_than_7_days_is_what_counts() -> None:
    promise = plus(SHIPPED, days=10)
    until = plus(SHIPPED, days=8)
    result = run(_order(promise, until), until=until)
    assert result.of(RULE) == []


def test_delivered_one_second_before_the_promise_nothing() -> None:
    done = logistics("delivered", "O1", plus(PROMISE, seconds=-1))
    result = run(_order(PROMISE, PROMISE, done), until=plus(PROMISE, days=30))
    assert result.of(RULE) == []


def test_not_shipped_orders_are_not_late_deliveries() -> None:
    events = [created("O1", "09:00", promised_delivery_by=PROMISE)]
    result = run(events, until=plus(PROMISE, days=1))
    assert result.of(RULE) == []


def test_delivered_late_resolves_with_the_same_id() -> None:
    done = logistics("delivered", "O1", plus(PROMISE, hours=2))
    result = run(_order(PROMISE, PROMISE, done))
    raised, resolved = result.of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert done["event_id"] in resolved.evidence.event_ids
    assert resolved.evidence.values["delivered_at"] == plus(PROMISE, hours=2)
