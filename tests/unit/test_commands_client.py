"""The CLI's pure decisions: the command it builds, who the actor is, what the listing keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from orderwatch.commands_client import (
    CommandsClientError,
    Filters,
    build_command,
    fold,
    resolve_actor,
    select,
    status_of,
)
from orderwatch.events.codec import decode_event
from orderwatch.events.commands import CommandSnooze
from orderwatch.events.exception import Evidence, ExceptionEvent


def event(ex_id: str, state: str, seq: int, status: str | None, **over: Any) -> ExceptionEvent:
    at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    fields: dict[str, Any] = {
        "exception_id": ex_id,
        "rule_id": "payment.paid_not_updated",
        "category": "payment",
        "severity": "high",
        "state": state,
        "subject": "O1",
        "order_id": "O1",
        "detected_at": at,
        "event_time": at,
        "summary": "s",
        "evidence": Evidence(event_ids=["e1"]),
        "owner": "tech",
        "actions": [],
        "escalation_level": 0,
        "seq": seq,
        "status": status,
    }
    return ExceptionEvent.model_validate({**fields, **over})


def test_the_built_command_decodes_as_the_contracts_command() -> None:
    cmd = build_command(
        "snooze",
        "ex-1",
        "payment.paid_not_updated",
        "O1",
        "alice",
        expected_status="acknowledged",
        fields={"for": "90m", "until": None},
        command_id="c-1",
        now=datetime(2026, 11, 20, 10, tzinfo=UTC),
    )
    assert cmd == {
        "event_id": "c-1",
        "type": "command.snooze",
        "occurred_at": "2026-11-20T10:00:00.000Z",
        "source": "cli",
        "exception_id": "ex-1",
        "rule_id": "payment.paid_not_updated",
        "subject": "O1",
        "actor": "alice",
        "expected_status": "acknowledged",
        "for": "90m",
    }
    decoded = decode_event(orjson.dumps(cmd))
    assert isinstance(decoded, CommandSnooze) and decoded.problem(0.0) is None
    with pytest.raises(ValueError, match="unknown command"):
        build_command("escalate", "ex-1", "r", "s", "alice")  # approve/reject are known now
    assert (
        build_command("acknowledge", "e", "r", "s", "a")["event_id"]
        != (build_command("acknowledge", "e", "r", "s", "a")["event_id"])
    ), "a fresh command id each time unless the caller gives one"


def test_the_actor_comes_from_the_flag_then_the_environment() -> None:
    assert resolve_actor("bob", {"ORDERWATCH_ACTOR": "alice"}) == "bob"
    assert resolve_actor(None, {"ORDERWATCH_ACTOR": "alice", "USER": "root"}) == "alice"
    assert resolve_actor(None, {"USER": "root"}) == "root"
    assert resolve_actor("  ", {"LOGNAME": "carol"}) == "carol"
    with pytest.raises(CommandsClientError, match="no actor"):
        resolve_actor(None, {})


def test_fold_keeps_the_latest_by_seq_whatever_the_order_read() -> None:
    raised = event("a", "raised", 1, "open")
    acked = event("a", "acknowledged", 2, "acknowledged", acknowledged_by="alice")
    resolved = event("b", "resolved", 2, "resolved", resolved_by="operator", resolution="fixed")
    b_raised = event("b", "raised", 1, "open")
    latest = fold([acked, b_raised, raised, resolved, acked])
    assert latest == {"a": acked, "b": resolved}
    # v1 events: no seq, no status; the state order decides and the status is derived
    v1 = [event("c", "resolved", 1, None), event("c", "escalated", 1, None, escalation_level=1)]
    assert status_of(fold(v1)["c"]) == "resolved"
    assert status_of(event("d", "escalated", 1, None)) == "open"


def test_filters_keep_open_ones_by_default() -> None:
    latest = {
        "a": event("a", "acknowledged", 2, "acknowledged"),
        "b": event("b", "resolved", 2, "resolved"),
        "c": event("c", "raised", 1, "open", severity="critical", owner="risk", rule_id="fraud.x"),
    }
    assert [e.exception_id for e in select(latest, Filters())] == ["c", "a"]
    assert [e.exception_id for e in select(latest, Filters(include_resolved=True))] == [
        "c",
        "a",
        "b",
    ]
    assert [e.exception_id for e in select(latest, Filters(statuses=("resolved",)))] == ["b"]
    assert [e.exception_id for e in select(latest, Filters(owners=("tech",)))] == ["a"]
    assert [e.exception_id for e in select(latest, Filters(rules=("fraud.",)))] == ["c"]
    assert [e.exception_id for e in select(latest, Filters(severities=("high",)))] == ["a"]


def test_approve_and_reject_are_the_contracts_commands() -> None:
    from orderwatch.events.commands import CommandApprove, CommandReject

    at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    approve = build_command(
        "approve", "ex-1", "payment.duplicate", "O1", "ada", fields={"action_id": "a-1"}, now=at
    )
    reject = build_command(
        "reject",
        "ex-1",
        "payment.duplicate",
        "O1",
        "ada",
        fields={"action_id": "a-1", "note": "wrong amount"},
        now=at,
    )
    decoded = decode_event(orjson.dumps(approve))
    assert type(decoded) is CommandApprove and decoded.action_id == "a-1"
    assert decoded.problem(at.timestamp()) is None
    decoded = decode_event(orjson.dumps(reject))
    assert type(decoded) is CommandReject and decoded.problem(at.timestamp()) is None
    assert "expected_status" not in approve  # the action's own status is what the engine checks


def test_latest_action_status_from_raw_events() -> None:
    from orderwatch.commands_client import ActionRef, latest_action

    def ev(aid: str, status: str, at: str) -> bytes:
        return orjson.dumps(
            {
                "action_id": aid,
                "exception_id": "ex-1",
                "rule_id": "payment.duplicate",
                "status": status,
                "at": at,
            }
        )

    raw = [
        ev("a-1", "requested", "2026-11-20T10:05:00Z"),
        b"not json",
        None,
        ev("a-1", "awaiting_approval", "2026-11-20T10:00:00Z"),
        ev("a-2", "awaiting_approval", "2026-11-20T10:00:00Z"),
        orjson.dumps({"action_id": "a-1", "status": 3}),
    ]
    assert latest_action(raw, "a-1") == ActionRef("a-1", "ex-1", "payment.duplicate", "requested")
    assert latest_action(raw, "a-3") is None


def test_every_operator_command_takes_the_shared_options() -> None:
    import typer.main

    from orderwatch.cli import app

    group: Any = typer.main.get_command(app)
    shared = {
        "--actor",
        "--expected-status",
        "--rule-id",
        "--subject",
        "--timeout",
        "--command-id",
        "--bootstrap",
        "--json",
    }
    for name in ("ack", "unack", "assign", "snooze", "comment", "resolve", "reopen"):
        options = {o for p in group.commands[name].params for o in p.opts}
        assert shared | {"exception_id"} <= options, name
    for name in ("approve", "reject"):
        options = {o for p in group.commands[name].params for o in p.opts}
        assert shared | {"action_id"} <= options, name
    assert "--reason" in {o for p in group.commands["reject"].params for o in p.opts}
