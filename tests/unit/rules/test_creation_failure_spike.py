"""order.creation_failure_spike: at least 10 order.creation_failed in a 5 min tumbling window."""

from typing import Any

from tests.factories import creation_failed, plus, run
from tests.unit.rules.rulebook import assert_card, at

RULE = "order.creation_failure_spike"


def failures(n: int, start: str = "10:00", step: int = 20) -> list[dict[str, Any]]:
    return [creation_failed(plus(start, seconds=i * step)) for i in range(n)]


def test_the_tenth_failure_in_the_10_00_window_raises_at_once() -> None:
    events = failures(10)  # 10:00:00 .. 10:03:00
    result = run(events)
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "system", "critical", "tech")
    assert raised.subject == "2026-11-20T10:00:00Z"
    assert raised.order_id is None
    assert raised.event_time == at("10:03") == raised.detected_at
    assert events[-1]["event_id"] in raised.evidence.event_ids
    assert raised.evidence.values["failures"] == 10


def test_nine_failures_raise_nothing() -> None:
    assert run(failures(9), until="11:00").of(RULE) == []


def test_the_tenth_at_10_05_00_is_in_the_next_window() -> None:
    events = failures(9, start="10:02", step=20)  # 10:02:00 .. 10:04:40
    events.append(creation_failed("10:05:00"))
    assert run(events, until="11:00").of(RULE) == []
    events.insert(-1, creation_failed("10:04:59"))
    assert run(events, until="11:00").states(RULE) == ["raised"]


def test_more_failures_in_the_same_window_raise_nothing_more() -> None:
    assert run(failures(14, step=20), until="11:00").states(RULE) == ["raised"]


def test_a_spike_in_the_next_window_is_a_new_exception() -> None:
    result = run(failures(10) + failures(10, start="10:05"))
    first, second = result.of(RULE)
    assert (first.subject, second.subject) == ("2026-11-20T10:00:00Z", "2026-11-20T10:05:00Z")
    assert first.exception_id != second.exception_id


def test_redelivering_nine_failures_does_not_make_ten() -> None:
    events = failures(9)
    assert run(events + events[:3], until="11:00").of(RULE) == []


def test_offsets_are_instants_18_04_plus_08_counts_in_the_10_00_z_window() -> None:
    events = failures(9)
    events.append(creation_failed("2026-11-20T18:04:00+08:00"))
    [raised] = run(events).of(RULE)
    assert raised.subject == "2026-11-20T10:00:00Z"


def test_a_notification_never_escalates_or_resolves() -> None:
    assert run(failures(10), until="2026-11-21T10:00:00Z").states(RULE) == ["raised"]
