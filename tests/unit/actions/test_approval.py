"""Approval (CONTRACT section 10): command.approve -> requested, command.reject -> rejected,
approval_ttl -> expired, a resolve while waiting -> cancelled; late or misdirected decisions are
invalid_transition, and the exception's own checks come first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.factories import created, paid, plus, refunded, status
from tests.unit.actions.book import command, rules_with, run

DUP = "payment.duplicate"


def _duplicate() -> list[dict[str, Any]]:
    return [
        created("O1", "10:00"),
        paid("O1", "10:01", payment_id="P1"),
        paid("O1", "10:02", payment_id="P2"),
        status("O1", "paid", "10:02:30"),
    ]


def _waiting() -> tuple[Any, Any]:
    r = run(_duplicate())
    [refund] = r.actions
    assert refund.status == "awaiting_approval" and refund.mode == "approval"
    return r.exception(DUP), refund


def test_approve_requests_the_refund_and_replies_accepted() -> None:
    e, refund = _waiting()
    approve = command("approve", "c1", "10:30", e, action_id=refund.action_id)
    r = run([*_duplicate(), approve])
    assert r.statuses() == ["awaiting_approval", "requested"]
    assert r.actions[1].at.isoformat().startswith("2026-11-20T10:30")
    [reply] = r.replies
    assert (reply.command_id, reply.accepted, reply.reason, reply.status) == (
        "c1",
        True,
        None,
        "open",
    )
    # the approve publishes no exception event of its own
    assert [x.state for x in r.exceptions] == ["raised"]


def test_reject_and_a_second_decision_is_invalid_transition() -> None:
    e, refund = _waiting()
    reject = command("reject", "c1", "10:30", e, action_id=refund.action_id)
    late = command("approve", "c2", "10:31", e, action_id=refund.action_id)
    r = run([*_duplicate(), reject, late])
    assert r.statuses() == ["awaiting_approval", "rejected"]
    assert [(x.accepted, x.reason) for x in r.replies] == [
        (True, None),
        (False, "invalid_transition"),
    ]


def test_a_decision_read_again_gets_the_same_reply_and_no_second_effect() -> None:
    e, refund = _waiting()
    approve = command("approve", "c1", "10:30", e, action_id=refund.action_id)
    r = run([*_duplicate(), approve, approve])
    assert r.statuses() == ["awaiting_approval", "requested"]
    assert r.replies[0] == r.replies[1]


def test_expired_after_approval_ttl_then_approve_is_invalid_transition() -> None:
    e, refund = _waiting()
    r = run(_duplicate(), until=plus("10:02", hours=24, seconds=1))
    assert r.statuses() == ["awaiting_approval", "expired"]
    assert r.actions[1].at.isoformat().startswith("2026-11-21T10:02")
    late = command("approve", "c1", plus("10:02", hours=25), e, action_id=refund.action_id)
    r = run([*_duplicate(), late])
    assert r.statuses() == ["awaiting_approval", "expired"]
    assert [(x.accepted, x.reason) for x in r.replies] == [(False, "invalid_transition")]


def test_approval_ttl_is_the_policys(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, DUP, "- type: payment.refund\n  approval_ttl: 30m\n")
    r = run(_duplicate(), until="10:32:01", rules=rules)
    assert r.statuses() == ["awaiting_approval", "expired"]
    assert run(_duplicate(), until="10:31:59", rules=rules).statuses() == ["awaiting_approval"]


def test_resolved_while_awaiting_approval_is_cancelled_and_then_approve_fails() -> None:
    e, refund = _waiting()
    fix = refunded("O1", "10:20", payment_id="P2")
    approve = command("approve", "c1", "10:30", e, action_id=refund.action_id)
    r = run([*_duplicate(), fix, approve])
    assert [x.state for x in r.exceptions] == ["raised", "resolved"]
    assert r.statuses() == ["awaiting_approval", "cancelled"]
    assert [(x.accepted, x.reason, x.status) for x in r.replies] == [
        (False, "invalid_transition", "resolved")
    ]


def test_the_exceptions_checks_come_first() -> None:
    e, refund = _waiting()
    wrong_id = {**command("approve", "c1", "10:30", e, action_id=refund.action_id)}
    wrong_id["exception_id"] = "nope"
    no_action = command("approve", "c2", "10:30", e)
    stale = command(
        "approve", "c3", "10:30", e, action_id=refund.action_id, expected_status="acknowledged"
    )
    other = command("approve", "c4", "10:30", e, action_id="not-an-action")
    r = run([*_duplicate(), wrong_id, no_action, stale, other])
    assert [x.reason for x in r.replies] == [
        "unknown_exception",
        "invalid_command",
        "stale",
        "invalid_transition",
    ]
    assert r.statuses() == ["awaiting_approval"]


def test_an_approved_refund_can_still_be_throttled(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, DUP, "- type: payment.refund\n  max_per_hour: 1\n")
    events: list[dict[str, Any]] = []
    for oid in ("O1", "O2"):
        events += [
            created(oid, "10:00"),
            paid(oid, "10:01", payment_id=f"{oid}-P1"),
            paid(oid, "10:02", payment_id=f"{oid}-P2"),
            status(oid, "paid", "10:02:30"),
        ]
    r = run(events, rules=rules)
    cmds = [
        command("approve", f"c{i}", f"10:3{i}", r.exceptions[i], action_id=a.action_id)
        for i, a in enumerate(r.actions)
    ]
    done = run([*events, *cmds], rules=rules)
    assert done.statuses() == ["awaiting_approval"] * 2 + ["requested", "throttled"]
    assert [x.accepted for x in done.replies] == [True, True]
