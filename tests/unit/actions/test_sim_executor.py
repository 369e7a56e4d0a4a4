"""The demo's reference executor, closed loop in replay: an automatic resync makes the pretend
OMS publish the missing status change, and the exception is resolved by its own condition; an
approved refund produces ``payment.refunded``, which resolves the duplicate payment."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orderwatch.simulation.executor import respond
from tests.factories import created, paid, status
from tests.unit.actions.book import command, rules_with, run


def _answers(actions: list[Any]) -> list[dict[str, Any]]:
    out = []
    for a in actions:
        for _, _, event in respond(a.model_dump(mode="json"), a.at.astimezone(UTC)):
            out.append(event)
    return out


def test_resync_closes_the_loop(tmp_path: Path) -> None:
    rules = rules_with(
        tmp_path, "payment.paid_not_updated", "- type: order.resync_status\n  mode: auto\n"
    )
    events = [created("O1", "10:00"), paid("O1", "10:00", payment_id="P1")]
    first = run(events, until="10:11", rules=rules)
    answers = _answers(first.actions)
    assert [e["type"] for e in answers] == ["order.status_changed", "action.succeeded"]
    done = run([*events, *answers], rules=rules)
    assert done.statuses() == ["requested", "succeeded"]
    assert [(e.state, e.resolved_by) for e in done.exceptions] == [
        ("raised", None),
        ("resolved", "rule"),
    ]
    # the same action read twice: the same events, counted once
    assert _answers(first.actions) == answers


def test_an_approved_refund_resolves_the_duplicate() -> None:
    events = [
        created("O1", "10:00"),
        paid("O1", "10:01", payment_id="P1"),
        paid("O1", "10:02", payment_id="P2"),
        status("O1", "paid", "10:02:30"),
    ]
    r = run(events)
    e, [refund] = r.exception("payment.duplicate"), r.actions
    approve = command("approve", "c1", "10:30", e, action_id=refund.action_id)
    approved = run([*events, approve])
    answers = _answers(approved.actions)
    assert [x["type"] for x in answers] == ["payment.refunded", "action.succeeded"]
    assert answers[0]["payment_id"] == "P2"
    done = run([*events, approve, *answers])
    assert done.statuses() == ["awaiting_approval", "requested", "succeeded"]
    assert [x.state for x in done.exceptions] == ["raised", "resolved"]


def test_planned_actions_are_never_executed() -> None:
    action = {
        "action_id": "a",
        "type": "payment.refund",
        "status": "planned",
        "idempotency_key": "a",
        "order_id": "O1",
    }
    assert respond(action, datetime(2026, 11, 20, tzinfo=UTC)) == []


def test_a_failure_answers_failed_and_changes_nothing_else() -> None:
    action = {
        "action_id": "a",
        "type": "order.resync_status",
        "status": "requested",
        "idempotency_key": "a",
        "order_id": "O1",
        "params": {},
    }
    [(stream, _, event)] = respond(action, datetime(2026, 11, 20, tzinfo=UTC), fail=True)
    assert stream == "results" and event["type"] == "action.failed"
