"""The pure half of the Alertmanager bridge: event -> alert JSON, open-alert bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from orderwatch.alertmanager import (
    OpenAlerts,
    coalesce,
    escalated_severity,
    parse_exception,
    to_alert,
)
from orderwatch.events.exception import Evidence, ExceptionEvent

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def exc(
    state: str = "raised",
    level: int = 0,
    *,
    ex_id: str = "ex-1",
    rule_id: str = "payment.paid_not_updated",
    severity: str = "high",
    detected: datetime = T0 + timedelta(minutes=10),
) -> ExceptionEvent:
    return ExceptionEvent.model_validate(
        {
            "exception_id": ex_id,
            "rule_id": rule_id,
            "category": "payment",
            "severity": severity,
            "state": state,
            "subject": "O1",
            "order_id": "O1",
            "detected_at": detected,
            "event_time": T0,
            "summary": "order O1 paid but still pending",
            "evidence": Evidence(event_ids=["ev-1"]),
            "owner": "tech",
            "actions": ["check the callback", "fix the status"],
            "escalation_level": level,
        }
    )


def test_raised_exception_becomes_an_active_alert_with_the_contract_labels() -> None:
    alert = to_alert(exc(), T0 + timedelta(hours=1))
    assert alert == {
        "labels": {
            "alertname": "payment.paid_not_updated",
            "severity": "high",
            "owner": "tech",
            "category": "payment",
            "exception_id": "ex-1",
        },
        "annotations": {
            "summary": "order O1 paid but still pending",
            "actions": "check the callback\nfix the status",
        },
        "startsAt": "2026-11-20T10:00:00Z",
        "endsAt": "2026-11-20T11:00:00Z",
    }


def test_ends_at_is_never_before_starts_at() -> None:
    alert = to_alert(exc(), T0 - timedelta(hours=1))
    assert alert["endsAt"] == alert["startsAt"]


@pytest.mark.parametrize(
    ("severity", "level", "expected"),
    [("low", 0, "low"), ("low", 1, "medium"), ("low", 3, "critical"), ("high", 2, "critical")],
)
def test_each_escalation_raises_severity_one_step_capped_at_critical(
    severity: Any, level: int, expected: str
) -> None:
    assert escalated_severity(severity, level) == expected


def test_open_alert_ends_hold_after_now_and_resolution_ends_at_detected_at() -> None:
    state = OpenAlerts(hold=timedelta(minutes=10))
    now = T0 + timedelta(minutes=11)
    [raised] = state.apply(exc(), now)
    assert raised["endsAt"] == "2026-11-20T10:21:00Z"
    assert "ex-1" in state
    [resolved] = state.apply(exc("resolved", detected=T0 + timedelta(minutes=30)), now)
    assert resolved["labels"] == raised["labels"]
    assert resolved["endsAt"] == "2026-11-20T10:30:00Z"
    assert len(state) == 0


def test_escalation_ends_the_previous_label_set_and_posts_the_raised_one() -> None:
    state = OpenAlerts()
    state.apply(exc(), T0)
    esc_at = T0 + timedelta(hours=1)
    ended, active = state.apply(exc("escalated", 1, detected=esc_at), esc_at)
    assert ended["labels"]["severity"] == "high"
    assert ended["endsAt"] == "2026-11-20T11:00:00Z"
    assert active["labels"]["severity"] == "critical"
    assert active["endsAt"] > ended["endsAt"]
    # already critical: the label set stays, so nothing must be ended
    [again] = state.apply(exc("escalated", 2, detected=esc_at), esc_at)
    assert again["labels"]["severity"] == "critical"
    [resolved] = state.apply(exc("resolved", 2), esc_at)
    assert resolved["labels"]["severity"] == "critical"


def test_redelivered_older_states_do_not_reopen_or_downgrade() -> None:
    state = OpenAlerts()
    state.apply(exc("escalated", 1), T0)
    assert state.apply(exc("raised", 0), T0) == []
    state.apply(exc("resolved", 1), T0)
    assert state.apply(exc("raised", 0), T0) == []
    assert state.apply(exc("escalated", 1), T0) == []
    assert len(state) == 0


def test_notifications_are_posted_once_with_a_bounded_life_and_not_tracked() -> None:
    state = OpenAlerts(notification_hold=timedelta(hours=1))
    event = exc(rule_id="fraud.blacklisted", severity="critical")
    [alert] = state.apply(event, T0)
    assert alert["endsAt"] == "2026-11-20T11:10:00Z"
    assert len(state) == 0
    assert state.due(T0 + timedelta(days=1)) == []


def test_open_alerts_are_reposted_when_due_with_ends_at_moved_ahead() -> None:
    state = OpenAlerts(hold=timedelta(minutes=10), repost_every=timedelta(minutes=2))
    state.apply(exc(), T0)
    assert state.due(T0 + timedelta(minutes=1)) == []
    [repost] = state.due(T0 + timedelta(minutes=2))
    assert repost["endsAt"] == "2026-11-20T10:12:00Z"
    assert state.due(T0 + timedelta(minutes=3)) == []
    state.apply(exc("resolved"), T0 + timedelta(minutes=3))
    assert state.due(T0 + timedelta(hours=1)) == []


def test_open_set_is_bounded_oldest_dropped_first() -> None:
    state = OpenAlerts(max_open=2, repost_every=timedelta(0))
    for i in range(3):
        state.apply(exc(ex_id=f"ex-{i}"), T0)
    assert len(state) == 2
    assert "ex-0" not in state
    assert state.dropped == 1
    assert {a["labels"]["exception_id"] for a in state.due(T0)} == {"ex-1", "ex-2"}


def test_recover_adopts_open_resolvable_alerts_and_reposts_them_at_once() -> None:
    state = OpenAlerts(hold=timedelta(minutes=10))
    held = to_alert(exc("escalated", 1), T0 + timedelta(minutes=5))
    notification = to_alert(exc(ex_id="ex-2", rule_id="fraud.blacklisted"), T0)
    foreign = {"labels": {"alertname": "HighCPU"}, "startsAt": "2026-11-20T09:00:00Z"}
    assert state.recover([held, notification, foreign], T0) == 1
    [repost] = state.due(T0)
    assert repost["labels"] == held["labels"]
    assert repost["endsAt"] == "2026-11-20T10:10:00Z"


def test_coalesce_keeps_the_last_word_per_label_set() -> None:
    raised = to_alert(exc(), T0 + timedelta(hours=1))
    resolved = to_alert(exc("resolved"), T0)
    other = to_alert(exc(ex_id="ex-2"), T0 + timedelta(hours=1))
    assert coalesce([raised, other, resolved]) == [resolved, other]


@pytest.mark.parametrize(
    "raw",
    [None, b"", b"not json", b"[]", b'{"exception_id": "x"}', b"{" + b" " * 300_000 + b"}"],
)
def test_malformed_messages_are_refused_with_a_reason(raw: bytes | None) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_exception(raw)


def test_valid_message_parses() -> None:
    event = exc()
    assert parse_exception(orjson.dumps(event.model_dump(mode="json"))) == event


# --- v2: operators' commands and inhibition (CONTRACT sections 8, 9) ---------------------------


def v2(state: str, seq: int, status: str, **over: Any) -> ExceptionEvent:
    base = exc(state, over.pop("level", 0), rule_id=over.pop("rule_id", "payment.paid_not_updated"))
    return base.model_copy(update={"seq": seq, "status": status, **over})


def test_acknowledged_keeps_the_alert_under_a_silence_until_unacknowledged() -> None:
    from orderwatch.alertmanager import SilenceOp, silence_body

    state = OpenAlerts(ack_silence=timedelta(hours=24))
    state.apply(v2("raised", 1, "open"), T0)
    assert state.take_silences() == []
    [alert] = state.apply(v2("acknowledged", 2, "acknowledged", acknowledged_by="alice"), T0)
    assert alert["labels"]["exception_id"] == "ex-1" and "ex-1" in state
    assert alert["annotations"]["acknowledged_by"] == "alice", "who is on it, in the alert"
    [op] = state.take_silences()
    assert op == SilenceOp("ex-1", T0 + timedelta(hours=24), "acknowledged by alice (orderwatch)")
    body = silence_body(op, T0, "sil-1")
    assert body["matchers"] == [
        {"name": "exception_id", "value": "ex-1", "isRegex": False, "isEqual": True}
    ]
    assert body["id"] == "sil-1" and body["createdBy"] == "orderwatch-alertmanager-bridge"
    # a comment or an assignment keeps the silence as it is
    state.apply(v2("commented", 3, "acknowledged", acknowledged_by="alice", note="n"), T0)
    [again] = state.take_silences()
    assert again.ends_at is not None
    state.apply(v2("unacknowledged", 4, "open"), T0)
    assert state.take_silences() == [SilenceOp("ex-1", None)]
    state.apply(v2("escalated", 5, "open", level=1), T0)
    assert state.take_silences() == []


def test_snooze_silences_until_its_end_and_resolve_ends_both() -> None:
    state = OpenAlerts()
    until = T0 + timedelta(hours=3)
    state.apply(v2("raised", 1, "open"), T0)
    state.apply(v2("acknowledged", 2, "acknowledged"), T0)
    state.apply(v2("snoozed", 3, "snoozed", snoozed_until=until), T0)
    [op] = state.take_silences()
    assert op.ends_at == until
    [resolved] = state.apply(
        v2("resolved", 4, "resolved", resolved_by="operator", resolution="fixed"), T0
    )
    assert resolved["endsAt"] == "2026-11-20T10:10:00Z", "ends at detected_at: resolved"
    assert state.take_silences()[0].ends_at is None
    assert len(state) == 0
    # re-deliveries of older events change nothing
    assert state.apply(v2("snoozed", 3, "snoozed", snoozed_until=until), T0) == []
    assert state.take_silences() == []
    # a reopen is open again: posted and tracked
    [reopened] = state.apply(v2("reopened", 5, "open"), T0)
    assert reopened["endsAt"] > reopened["startsAt"] and "ex-1" in state


def test_a_snooze_already_over_when_read_silences_nothing() -> None:
    state = OpenAlerts()
    state.apply(v2("snoozed", 3, "snoozed", snoozed_until=T0 - timedelta(minutes=1)), T0)
    assert state.take_silences() == []


def test_inhibited_exceptions_never_alert_and_end_an_active_alert() -> None:
    state = OpenAlerts()
    assert state.apply(v2("inhibited", 1, "inhibited", inhibited_by="ex-0"), T0) == []
    assert len(state) == 0
    [alert] = state.apply(v2("raised", 2, "open"), T0)  # released: the inhibitor resolved
    assert "ex-1" in state
    state.apply(v2("acknowledged", 3, "acknowledged"), T0)
    state.take_silences()
    [ended] = state.apply(v2("inhibited", 4, "inhibited", inhibited_by="ex-9"), T0)
    assert ended["labels"] == alert["labels"]
    assert ended["endsAt"] == "2026-11-20T10:10:00Z", "ends at detected_at: no longer alerting"
    assert len(state) == 0 and state.take_silences()[0].ends_at is None
    assert state.apply(v2("raised", 2, "open"), T0) == [], "older than the inhibition"


def test_notifications_can_be_silenced_and_resolved_by_people() -> None:
    state = OpenAlerts()
    rule = "fraud.blacklisted"
    [alert] = state.apply(v2("raised", 1, "open", rule_id=rule), T0)
    assert state.apply(v2("acknowledged", 2, "acknowledged", rule_id=rule), T0) == []
    assert state.take_silences()[0].ends_at is not None
    [resolved] = state.apply(
        v2("resolved", 3, "resolved", rule_id=rule, resolved_by="operator"), T0
    )
    assert resolved["labels"] == alert["labels"]
    assert state.take_silences()[0].ends_at is None


def test_the_bridge_adopts_only_its_own_active_silences() -> None:
    state = OpenAlerts()
    mine = {
        "id": "s1",
        "createdBy": "orderwatch-alertmanager-bridge",
        "status": {"state": "active"},
        "matchers": [{"name": "exception_id", "value": "ex-1"}],
    }
    theirs = {**mine, "id": "s2", "createdBy": "bob"}
    expired = {**mine, "id": "s3", "status": {"state": "expired"}}
    assert state.adopt_silences([mine, theirs, expired]) == {"ex-1": "s1"}
    state.apply(v2("unacknowledged", 4, "open"), T0)
    assert [op.ends_at for op in state.take_silences()] == [None]
