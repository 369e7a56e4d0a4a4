"""payment.success_rate_drop: in a 5 min tumbling window, >= 20 attempts and success ratio < 0.8."""

from typing import Any

from tests.factories import paid, payment_failed, plus, run
from tests.unit.rules.rulebook import assert_card, at

RULE = "payment.success_rate_drop"


def attempts(ok: int, failed: int, start: str = "10:00") -> list[dict[str, Any]]:
    """``ok`` successes and ``failed`` failures, one order each, spread over 4 minutes."""
    n = ok + failed
    return [
        paid(f"O{i}", plus(start, seconds=i * 240 // n), payment_id=f"P{i}")
        if i < ok
        else payment_failed(f"O{i}", plus(start, seconds=i * 240 // n), payment_id=f"PF{i}")
        for i in range(n)
    ]


def test_15_of_20_succeeded_from_10_00_raises_when_the_window_closes() -> None:
    result = run(attempts(15, 5), until="10:05:01")
    [raised] = result.of(RULE)
    assert raised.state == "raised"
    assert_card(raised, "system", "critical", "tech")
    assert raised.subject == "2026-11-20T10:00:00Z", "the window start"
    assert (raised.order_id, raised.sku, raised.warehouse_id) == (None, None, None)
    assert raised.event_time == at("10:05")
    assert raised.detected_at == at("10:05:01")
    values = raised.evidence.values
    assert (values["attempts"], values["succeeded"], values["failed"]) == (20, 15, 5)


def test_16_of_20_is_exactly_0_8_and_raises_nothing() -> None:
    assert run(attempts(16, 4), until="10:30").of(RULE) == []


def test_19_attempts_all_failed_are_too_few_and_raise_nothing() -> None:
    assert run(attempts(0, 19), until="10:30").of(RULE) == []


def test_the_window_is_not_judged_before_the_clock_passes_its_end() -> None:
    assert run(attempts(0, 20), until="10:05").of(RULE) == []


def test_failures_split_across_two_windows_are_not_added_up() -> None:
    events = attempts(5, 5, start="10:00") + attempts(5, 5, start="10:05")
    for i, e in enumerate(events):  # distinct orders and payment ids in the second window
        e["order_id"], e["payment_id"] = f"X{i}", f"{e['payment_id']}-{i}"
    assert run(events, until="10:30").of(RULE) == []


def test_gateway_recallbacks_of_a_failure_are_one_attempt() -> None:
    events = attempts(16, 4)
    recalls = [
        payment_failed(e["order_id"], plus(e["occurred_at"], seconds=5), e["payment_id"])
        for e in events
        if e["type"] == "payment.failed"
    ]
    assert run(events + recalls, until="10:30").of(RULE) == [], "16/20, not 16/24"


def test_redelivered_events_change_nothing() -> None:
    events = attempts(16, 4)
    assert run(events + events, until="10:30").of(RULE) == []
    once = run(attempts(10, 10), until="10:30").of(RULE)
    assert len(once) == 1


def test_offsets_are_instants_18_02_plus_08_is_in_the_10_00_z_window() -> None:
    events = attempts(15, 4)
    events.append(payment_failed("OX", "2026-11-20T18:02:00+08:00", payment_id="PFX"))
    [raised] = run(events, until="10:05:01").of(RULE)
    assert raised.subject == "2026-11-20T10:00:00Z"
    assert raised.evidence.values["attempts"] == 20


def test_a_notification_never_escalates_or_resolves() -> None:
    assert run(attempts(0, 20), until="2026-11-21T10:00:00Z").states(RULE) == ["raised"]
