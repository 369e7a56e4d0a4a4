"""logistics.tracking_stale: shipped, not delivered, and no logistics event for 72h."""

from datetime import datetime

from tests.factories import created, logistics, paid, plus, run, status
from tests.unit.rules.rulebook import assert_card

RULE = "logistics.tracking_stale"
SHIPPED = "2026-11-21T08:00:00Z"


def _shipped_order(*more: dict[str, object]) -> list[dict[str, object]]:
    return [
        created("O1", "09:00"),
        paid("O1", "09:05"),
        status("O1", "paid", "09:05"),
        logistics("shipped", "O1", SHIPPED),
        *more,  # type: ignore[list-item]
    ]


def test_shipped_then_silent_for_72h_raises() -> None:
    deadline = plus(SHIPPED, hours=72)
    result = run(_shipped_order(), until=plus(deadline, seconds=1))
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert raised.subject == "O1" and raised.order_id == "O1"
    assert_card(raised, "logistics", "medium", "logistics")
    assert raised.event_time == datetime.fromisoformat(deadline)
    assert raised.evidence.values["last_event_at"] == SHIPPED


def test_the_72h_count_from_the_last_scan() -> None:
    scan = logistics("scanned", "O1", plus(SHIPPED, hours=30), location="Hub A")
    deadline = plus(SHIPPED, hours=102)
    result = run(_shipped_order(scan), until=plus(deadline, seconds=1))
    [raised] = result.of(RULE)
    assert raised.event_time == datetime.fromisoformat(deadline)
    assert raised.evidence.event_ids == [scan["event_id"]]


def test_one_second_before_72h_nothing() -> None:
    result = run(_shipped_order(), until=plus(SHIPPED, hours=72, seconds=-1))
    assert result.of(RULE) == []


def test_a_scan_every_71h_keeps_it_quiet() -> None:
    scans = [logistics("scanned", "O1", plus(SHIPPED, hours=71 * k)) for k in (1, 2, 3)]
    result = run(_shipped_order(*scans), until=plus(SHIPPED, hours=71 * 3 + 71))
    assert result.of(RULE) == []


def test_delivered_parcels_are_not_stale() -> None:
    done = logistics("delivered", "O1", plus(SHIPPED, hours=24))
    result = run(_shipped_order(done), until=plus(SHIPPED, days=30))
    assert result.of(RULE) == []


def test_status_delivered_also_ends_tracking() -> None:
    done = status("O1", "delivered", plus(SHIPPED, hours=24))
    result = run(_shipped_order(done), until=plus(SHIPPED, days=30))
    assert result.of(RULE) == []


def test_never_shipped_orders_are_not_stale() -> None:
    result = run([created("O1", "09:00"), paid("O1", "09:05")], until=plus(SHIPPED, days=5))
    assert result.of(RULE) == []


def test_a_late_scan_resolves_with_the_same_id() -> None:
    scan = logistics("scanned", "O1", plus(SHIPPED, hours=74))
    result = run(_shipped_order(scan))
    raised, resolved = result.of(RULE)
    assert (raised.state, resolved.state) == ("raised", "resolved")
    assert raised.exception_id == resolved.exception_id
    assert scan["event_id"] in resolved.evidence.event_ids


def test_a_late_delivery_resolves_it_too() -> None:
    done = logistics("delivered", "O1", plus(SHIPPED, hours=74))
    result = run(_shipped_order(done))
    assert result.states(RULE) == ["raised", "resolved"]


def test_shipped_by_status_only_then_a_first_scan_resolves() -> None:
    scan = logistics("scanned", "O1", plus(SHIPPED, hours=74))
    result = run(
        [
            created("O1", "09:00"),
            paid("O1", "09:05"),
            status("O1", "shipped", SHIPPED),
            scan,
        ],
        until=plus(SHIPPED, hours=90),
    )
    assert result.states(RULE) == ["raised", "resolved"]


def test_stale_again_after_a_resolving_scan_is_a_new_exception() -> None:
    scan = logistics("scanned", "O1", plus(SHIPPED, hours=74))
    result = run(_shipped_order(scan), until=plus(SHIPPED, hours=74 + 72, seconds=1))
    first, resolved, second = result.of(RULE)
    assert (first.state, resolved.state, second.state) == ("raised", "resolved", "raised")
    assert second.exception_id != first.exception_id
    assert second.event_time == datetime.fromisoformat(plus(SHIPPED, hours=146))
