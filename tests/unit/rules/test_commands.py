"""Operators' commands (CONTRACT section 8): every transition of the table, every rejection
reason in the contract's order, the acknowledgement timeout, snooze end, reopen, idempotence.

The exception most cases act on: O1 paid at 10:00, status still pending, so
payment.paid_not_updated (high: escalates each 1 h, acknowledgement timeout 2 h) is raised at
10:10; a status change of another order (T) is the clock's tick.
"""

from __future__ import annotations

from typing import Any

import orjson

from orderwatch.engine import Engine
from orderwatch.engine.lifecycle import exception_id
from orderwatch.events.codec import decode_event
from orderwatch.events.exception import ExceptionEvent
from tests.factories import command, created, paid, run, status, ts
from tests.unit.rules.rulebook import at

RULE = "payment.paid_not_updated"
BASE = [created("O1", "09:59"), paid("O1", "10:00"), status("T", "pending_payment", "10:11")]
EX: dict[str, Any] = {"exception_id": exception_id(RULE, "O1", ts("10:10")), "rule_id": RULE}
EX["subject"] = "O1"


def tick(when: str) -> dict[str, Any]:
    return status("T", "pending_payment", when)


def go(*later: dict[str, Any], until: str | None = None) -> Any:
    return run([*BASE, *later], until=until)


def mine(result: Any) -> list[ExceptionEvent]:
    return result.of(RULE)


def states(result: Any) -> list[tuple[str, str | None]]:
    return [(e.state, e.status) for e in mine(result)]


# --- acknowledge ----------------------------------------------------------------------------------


def test_acknowledge_an_open_exception_stops_escalation() -> None:
    ack = command("acknowledge", EX, "10:12", actor="alice")
    result = go(ack, tick("11:10:01"), tick("11:50"))
    raised, acked = mine(result)
    assert (acked.state, acked.status, acked.acknowledged_by) == (
        "acknowledged",
        "acknowledged",
        "alice",
    )
    assert (raised.seq, acked.seq) == (1, 2) and acked.exception_id == raised.exception_id
    assert acked.detected_at == at("10:12")
    assert result.reply(ack["event_id"]) == {
        "command_id": ack["event_id"],
        "exception_id": EX["exception_id"],
        "accepted": True,
        "reason": None,
        "status": "acknowledged",
    }


def test_the_acknowledgement_timeout_reopens_it_and_escalation_resumes_an_hour_later() -> None:
    result = go(
        command("acknowledge", EX, "10:12"), tick("12:12"), tick("12:12:01"), tick("13:12:01")
    )
    assert states(result) == [
        ("raised", "open"),
        ("acknowledged", "acknowledged"),
        ("unacknowledged", "open"),
        ("escalated", "open"),
    ]
    _, _, unacked, escalated = mine(result)
    assert unacked.detected_at == at("12:12:01") and unacked.acknowledged_by is None
    assert unacked.escalation_level == 0, "a re-notification at its current level"
    assert (escalated.escalation_level, escalated.detected_at) == (1, at("13:12:01"))


def test_acknowledging_again_restarts_the_timeout() -> None:
    events = [command("acknowledge", EX, "10:12"), command("acknowledge", EX, "11:00", actor="bob")]
    result = go(*events, tick("12:12:01"), tick("13:00:01"))
    assert states(result)[1:] == [
        ("acknowledged", "acknowledged"),
        ("acknowledged", "acknowledged"),
        ("unacknowledged", "open"),
    ]
    assert mine(result)[2].acknowledged_by == "bob"
    assert mine(result)[3].detected_at == at("13:00:01")


# --- unacknowledge --------------------------------------------------------------------------------


def test_unacknowledge_opens_it_and_the_next_escalation_is_an_hour_after() -> None:
    events = [command("acknowledge", EX, "10:12"), command("unacknowledge", EX, "10:40")]
    result = go(*events, tick("11:10:01"), tick("11:40:01"))
    assert states(result) == [
        ("raised", "open"),
        ("acknowledged", "acknowledged"),
        ("unacknowledged", "open"),
        ("escalated", "open"),
    ]
    assert mine(result)[3].detected_at == at("11:40:01")


def test_unacknowledge_of_an_open_exception_is_an_invalid_transition() -> None:
    unack = command("unacknowledge", EX, "10:12")
    result = go(unack)
    assert result.reply(unack["event_id"])["reason"] == "invalid_transition"
    assert result.reply(unack["event_id"])["status"] == "open"
    assert states(result) == [("raised", "open")]


# --- assign -------------------------------------------------------------------------------------


def test_assign_names_who_handles_it_without_acknowledging() -> None:
    result = go(command("assign", EX, "10:12", assignee="warehouse-bob"), tick("11:10:01"))
    _, assigned, escalated = mine(result)
    assert (assigned.state, assigned.status, assigned.assignee) == (
        "assigned",
        "open",
        "warehouse-bob",
    )
    assert (escalated.state, escalated.assignee) == ("escalated", "warehouse-bob")


def test_assign_on_a_snoozed_exception_ends_the_snooze() -> None:
    events = [
        command("acknowledge", EX, "10:12"),
        command("snooze", EX, "10:13", for_="3h"),
        command("assign", EX, "10:20", assignee="bob"),
    ]
    result = go(*events, tick("11:20:01"))
    assert states(result)[2:] == [
        ("snoozed", "snoozed"),
        ("assigned", "open"),
        ("escalated", "open"),
    ]
    assert mine(result)[3].snoozed_until is None and mine(result)[3].acknowledged_by is None


def test_assign_without_an_assignee_is_an_invalid_command() -> None:
    for fields in ({}, {"assignee": ""}, {"assignee": 7}):
        assign = command("assign", EX, "10:12", **fields)
        assert go(assign).reply(assign["event_id"])["reason"] == "invalid_command"


# --- snooze -------------------------------------------------------------------------------------


def test_snooze_for_a_duration_then_open_again_and_escalation_an_hour_after_its_end() -> None:
    events = [command("acknowledge", EX, "10:12"), command("snooze", EX, "10:30", for_="1h30m")]
    result = go(*events, tick("12:00"), tick("12:00:01"), tick("13:00:01"))
    assert states(result)[2:] == [
        ("snoozed", "snoozed"),
        ("unacknowledged", "open"),
        ("escalated", "open"),
    ]
    snoozed, ended, escalated = mine(result)[2:]
    assert snoozed.snoozed_until == at("12:00") and snoozed.acknowledged_by == "alice"
    assert ended.detected_at == at("12:00:01") and ended.snoozed_until is None
    assert escalated.detected_at == at("13:00:01")


def test_snooze_until_a_time_and_a_repeat_replaces_it() -> None:
    events = [
        command("acknowledge", EX, "10:12"),
        command("snooze", EX, "10:13", until=ts("11:00")),
        command("snooze", EX, "10:14", until=ts("15:00")),
    ]
    result = go(*events, tick("14:59"), tick("15:00:01"))
    assert [e.snoozed_until for e in mine(result)[2:4]] == [at("11:00"), at("15:00")]
    assert states(result)[4:] == [("unacknowledged", "open")]


def test_a_snooze_suspends_the_acknowledgement_timeout() -> None:
    events = [command("acknowledge", EX, "10:12"), command("snooze", EX, "10:13", for_="4h")]
    result = go(*events, tick("12:12:01"), tick("14:13:01"))
    assert states(result)[2:] == [("snoozed", "snoozed"), ("unacknowledged", "open")]
    assert mine(result)[3].detected_at == at("14:13:01")


def test_snooze_of_an_open_exception_is_an_invalid_transition() -> None:
    snooze = command("snooze", EX, "10:12", for_="1h")
    assert go(snooze).reply(snooze["event_id"])["reason"] == "invalid_transition"


def test_snooze_fields_wrong_for_its_type_are_an_invalid_command() -> None:
    ack = command("acknowledge", EX, "10:12")
    for fields in (
        {},
        {"for_": "1h", "until": ts("12:00")},
        {"until": ts("10:13")},  # at the moment
        {"until": ts("10:00")},  # before it
        {"until": "tomorrow"},
        {"for_": "90 minutes"},
        {"for_": "0m"},
    ):
        snooze = command("snooze", EX, "10:13", **fields)
        result = go(ack, snooze)
        assert result.reply(snooze["event_id"])["reason"] == "invalid_command", fields
        assert states(result)[-1] == ("acknowledged", "acknowledged"), "nothing applied halfway"


# --- comment ------------------------------------------------------------------------------------


def test_comment_in_any_status_with_the_phone_masked_on_that_event_only() -> None:
    note = "customer called from 138 1234 5678, paid by bank transfer"
    events = [
        command("comment", EX, "10:12", note=note),
        command("resolve", EX, "10:13", resolution="fixed"),
        command("comment", EX, "10:14", note="closed in the OMS"),
    ]
    result = go(*events, tick("11:11"))
    assert states(result) == [
        ("raised", "open"),
        ("commented", "open"),
        ("resolved", "resolved"),
        ("commented", "resolved"),
    ]
    _, first, resolved, second = mine(result)
    assert first.note == "customer called from *******5678, paid by bank transfer"
    assert "1234" not in orjson.dumps(first.model_dump(mode="json")).decode()
    assert resolved.note is None, "a note is not repeated on later events"
    assert (second.note, second.resolution) == ("closed in the OMS", "fixed")


def test_a_comment_without_a_note_or_with_a_long_one_is_an_invalid_command() -> None:
    for fields in ({}, {"note": ""}, {"note": "x" * 2001}):
        comment = command("comment", EX, "10:12", **fields)
        assert go(comment).reply(comment["event_id"])["reason"] == "invalid_command"
    ok = command("comment", EX, "10:12", note="x" * 2000)
    assert go(ok).reply(ok["event_id"])["accepted"]


# --- resolve and reopen ---------------------------------------------------------------------------


def test_resolve_closes_it_for_good_its_condition_and_escalation_are_ignored() -> None:
    resolve = command("resolve", EX, "10:12", resolution="false_positive", note="test order")
    result = go(resolve, status("O1", "paid", "10:30"), tick("13:00"), paid("O1", "10:00"))
    assert states(result) == [("raised", "open"), ("resolved", "resolved")]
    resolved = mine(result)[1]
    assert (resolved.resolved_by, resolved.resolution, resolved.note) == (
        "operator",
        "false_positive",
        "test order",
    )
    assert resolved.exception_id == EX["exception_id"]


def test_resolve_with_an_unknown_resolution_is_an_invalid_command() -> None:
    for fields in ({}, {"resolution": "done"}, {"resolution": "fixed", "note": ""}):
        resolve = command("resolve", EX, "10:12", **fields)
        result = go(resolve)
        assert result.reply(resolve["event_id"])["reason"] == "invalid_command"
        assert states(result) == [("raised", "open")]


def test_resolving_a_resolved_exception_is_an_invalid_transition() -> None:
    again = command("resolve", EX, "10:30", resolution="fixed")
    result = go(status("O1", "paid", "10:20"), again)
    assert states(result) == [("raised", "open"), ("resolved", "resolved")]
    assert mine(result)[1].resolved_by == "rule"
    assert result.reply(again["event_id"])["reason"] == "invalid_transition"
    assert result.reply(again["event_id"])["status"] == "resolved"


def test_reopen_opens_it_unacknowledged_and_escalation_resumes_at_its_level() -> None:
    events = [
        tick("11:10:01"),  # escalated to level 1
        command("resolve", EX, "11:20", resolution="fixed"),
        command("reopen", EX, "11:30", note="it came back"),
    ]
    result = go(*events, tick("12:30:01"))
    assert states(result) == [
        ("raised", "open"),
        ("escalated", "open"),
        ("resolved", "resolved"),
        ("reopened", "open"),
        ("escalated", "open"),
    ]
    reopened, escalated = mine(result)[3:]
    assert (reopened.resolved_by, reopened.resolution, reopened.note) == (
        None,
        None,
        "it came back",
    )
    assert reopened.escalation_level == 1
    assert (escalated.escalation_level, escalated.detected_at) == (2, at("12:30:01"))
    assert [e.seq for e in mine(result)] == [1, 2, 3, 4, 5]


def test_reopen_of_an_open_exception_is_an_invalid_transition() -> None:
    reopen = command("reopen", EX, "10:12")
    assert go(reopen).reply(reopen["event_id"])["reason"] == "invalid_transition"


def test_reopen_applies_to_the_latest_occurrence_only() -> None:
    # order.status_regression is a notification: each regression after a resolve is a new one
    first_regression = status("O1", "paid", "10:20", previous_status="shipped")
    later_regression = status("O1", "pending_payment", "10:40", previous_status="paid")
    first = run([*BASE, first_regression]).of("order.status_regression")[0]
    events = [*BASE, first_regression, command("resolve", first, "10:30", resolution="fixed")]
    second = run([*events, later_regression]).of("order.status_regression")[-1]
    assert second.exception_id != first.exception_id and second.seq == 1
    old = command("reopen", first, "10:50")
    new = command("reopen", second, "10:51", actor="bob")
    result = run(
        [
            *events,
            later_regression,
            old,
            command("resolve", second, "10:45", resolution="fixed"),
            new,
        ]
    )
    assert result.reply(old["event_id"])["reason"] == "invalid_transition"
    assert result.reply(new["event_id"])["accepted"]


# --- the order of the checks, and unknown exceptions


def test_checks_run_in_the_contracts_order() -> None:
    unknown_and_invalid = command("assign", {**EX, "exception_id": "nope"}, "10:12")
    invalid_and_stale = command("assign", EX, "10:12", expected_status="snoozed")
    stale_and_not_allowed = command("unacknowledge", EX, "10:12", expected_status="acknowledged")
    not_allowed = command("unacknowledge", EX, "10:12", expected_status="open")
    result = go(unknown_and_invalid, invalid_and_stale, stale_and_not_allowed, not_allowed)
    assert [result.reply(c["event_id"])["reason"] for c in (
        unknown_and_invalid, invalid_and_stale, stale_and_not_allowed, not_allowed
    )] == ["unknown_exception", "invalid_command", "stale", "invalid_transition"]  # fmt: skip
    assert states(result) == [("raised", "open")], "a rejected command changes nothing"


def test_unknown_exception_when_id_rule_or_subject_do_not_match() -> None:
    for wrong in (
        {**EX, "exception_id": exception_id(RULE, "O1", ts("10:11"))},
        {**EX, "subject": "O2"},
        {**EX, "rule_id": "payment.orphan"},
        {**EX, "rule_id": "no.such_rule"},
        {**EX, "rule_id": "system.source_silent"},
        {**EX, "subject": None},
    ):
        ack = command("acknowledge", wrong, "10:12")
        assert go(ack).reply(ack["event_id"]) == {
            "command_id": ack["event_id"],
            "exception_id": wrong["exception_id"],
            "accepted": False,
            "reason": "unknown_exception",
            "status": None,
        }


def test_a_stale_command_is_rejected_with_the_current_status() -> None:
    ack = command("acknowledge", EX, "10:12", expected_status="open")
    late = command("resolve", EX, "10:13", resolution="fixed", expected_status="open")
    result = go(ack, late)
    assert result.reply(late["event_id"])["reason"] == "stale"
    assert result.reply(late["event_id"])["status"] == "acknowledged"


def test_actor_and_expected_status_are_checked() -> None:
    for cmd in (
        command("acknowledge", EX, "10:12", actor=None),
        command("acknowledge", EX, "10:12", actor=""),
        command("acknowledge", EX, "10:12", expected_status="closed"),
    ):
        assert go(cmd).reply(cmd["event_id"])["reason"] == "invalid_command"


def test_approve_and_reject_with_no_action_awaiting_approval_are_invalid_transitions() -> None:
    approve = command("approve", EX, "10:12", action_id="a1")
    reject = command("reject", EX, "10:12", action_id="a1")
    missing = command("approve", EX, "10:12")
    result = go(approve, reject, missing)
    assert result.reply(approve["event_id"])["reason"] == "invalid_transition"
    assert result.reply(reject["event_id"])["reason"] == "invalid_transition"
    assert result.reply(missing["event_id"])["reason"] == "invalid_command"


def test_only_broken_envelopes_go_to_the_dead_letter_path() -> None:
    ack = command("acknowledge", EX, "10:12")
    broken = [
        {k: v for k, v in ack.items() if k != "exception_id"},
        {**ack, "type": "command.escalate"},
        {k: v for k, v in ack.items() if k != "occurred_at"},
        {**ack, "exception_id": ""},
    ]
    result = go(*broken)
    assert len(result.stderr.splitlines()) == 4 and result.replies == []
    for wrong in ({"assignee": ["a"]}, {"until": 5, "note": {"a": 1}}):
        decode_event(orjson.dumps({**ack, "type": "command.assign", **wrong}))  # decodes


# --- idempotence ------------------------------------------------------------------------------


def test_a_command_read_twice_has_effect_once_and_the_same_reply() -> None:
    ack = command("acknowledge", EX, "10:12")
    later = command("unacknowledge", EX, "10:20")
    result = go(ack, ack, later, ack, tick("10:30"))
    assert states(result) == [
        ("raised", "open"),
        ("acknowledged", "acknowledged"),
        ("unacknowledged", "open"),
    ]
    replies = [r for r in result.replies if orjson.loads(r)["command_id"] == ack["event_id"]]
    assert len(replies) == 3 and len(set(replies)) == 1, "byte-identical"


def test_commands_route_to_the_shard_that_owns_the_exception() -> None:
    ack = decode_event(orjson.dumps(command("acknowledge", EX, "10:12")))
    assert Engine.route(ack) == ("o:O1",)
    drift = {"exception_id": "x", "rule_id": "inventory.sync_drift", "subject": "SKU-1/WH1"}
    spike = {"exception_id": "x", "rule_id": "order.creation_failure_spike", "subject": "t"}
    failed = {"exception_id": "x", "rule_id": "order.creation_failed", "subject": "O9"}
    flag = {"exception_id": "x", "rule_id": "fraud.shared_phone", "subject": "O9"}
    silent = {"exception_id": "x", "rule_id": "system.source_silent", "subject": "orders"}
    routes = [
        Engine.route(decode_event(orjson.dumps(command("comment", ex, "10:12", note="n"))))
        for ex in (drift, spike, failed, flag, silent)
    ]
    assert routes == [("s:SKU-1/WH1",), ("g:rates",), ("f:O9",), ("o:O9",), ("n:x",)]


# --- the race people complain about: an acknowledgement and the resolving event, either order


def test_acknowledged_then_resolved_by_its_condition() -> None:
    result = go(command("acknowledge", EX, "10:12"), status("O1", "paid", "10:13"), tick("13:00"))
    assert states(result) == [
        ("raised", "open"),
        ("acknowledged", "acknowledged"),
        ("resolved", "resolved"),
    ]
    resolved = mine(result)[2]
    assert (resolved.resolved_by, resolved.acknowledged_by) == ("rule", None)


def test_resolved_by_its_condition_then_acknowledged_is_rejected_and_reopens_nothing() -> None:
    ack = command("acknowledge", EX, "10:13")
    result = go(status("O1", "paid", "10:12"), ack, tick("13:00"))
    assert states(result) == [("raised", "open"), ("resolved", "resolved")]
    assert result.reply(ack["event_id"]) == {
        "command_id": ack["event_id"],
        "exception_id": EX["exception_id"],
        "accepted": False,
        "reason": "invalid_transition",
        "status": "resolved",
    }


# --- notifications (rules without a resolving condition)


def test_a_notification_is_open_until_a_person_resolves_it_and_never_escalates() -> None:
    order = created("R1", "10:00", remark="urgent please")
    [raised] = run([order]).of("customer.remark_attention")
    events = [
        order,
        command("acknowledge", raised, "10:05"),
        command("resolve", raised, "10:06", resolution="fixed"),
    ]
    result = run(events, until="2026-11-22T00:00:00Z").of("customer.remark_attention")
    assert [(e.state, e.status) for e in result] == [
        ("raised", "open"),
        ("acknowledged", "acknowledged"),
        ("resolved", "resolved"),
    ]
    assert result[2].resolved_by == "operator"


def test_an_open_notification_absorbs_later_triggers_and_a_resolve_lets_new_ones_in() -> None:
    regression = status("O1", "paid", "10:20", previous_status="shipped")
    again = status("O1", "pending_payment", "10:25", previous_status="paid")
    later = status("O1", "paid", "10:40", previous_status="delivered")
    [first] = run([*BASE, regression]).of("order.status_regression")
    resolve = command("resolve", first, "10:30", resolution="fixed")
    # `again` came while the first was open: nothing, and nothing when it is re-delivered later
    result = run([*BASE, regression, again, resolve, again, later]).of("order.status_regression")
    assert [(e.state, e.seq) for e in result] == [("raised", 1), ("resolved", 2), ("raised", 1)]
    assert result[2].exception_id != first.exception_id
    assert result[2].evidence.event_ids == [later["event_id"]]


def test_a_resolved_by_operator_exception_is_never_raised_again_by_its_trigger() -> None:
    resolve = command("resolve", EX, "10:12", resolution="wont_fix")
    result = go(resolve, *BASE, tick("12:00"))
    assert states(result) == [("raised", "open"), ("resolved", "resolved")]


# --- state survives a restart (it is shard state like any other) ------------------------------


def test_a_restored_engine_continues_exactly_and_repeats_its_replies() -> None:
    from orderwatch.events.codec import encode_exception, encode_reply
    from orderwatch.rulefiles import load_catalog

    first = [
        *BASE,
        command("acknowledge", EX, "10:12", event_id="c-ack"),
        command("snooze", EX, "10:13", for_="1h", event_id="c-snooze"),
        command("comment", EX, "10:14", note="13812345678", event_id="c-note"),
    ]
    later = [
        command("acknowledge", EX, "10:12", event_id="c-ack"),  # read again after the restart
        tick("11:13:01"),
        command("resolve", EX, "11:20", resolution="fixed", event_id="c-fix"),
        command("reopen", EX, "11:30", event_id="c-reopen"),
        tick("12:30:01"),
    ]

    def feed(engine: Engine, events: list[dict[str, Any]]) -> list[bytes]:
        out = []
        for e in events:
            ev = decode_event(orjson.dumps(e))
            out += [encode_exception(x) for x in engine.step(ev, ev.occurred_ts)]
            out += [encode_reply(r) for r in engine.take_replies()]
        return out

    live = Engine(load_catalog())
    feed(live, first)
    restored = Engine(load_catalog())
    for key, data in live.take_dirty().items():
        assert data is not None
        restored.restore(key, orjson.loads(orjson.dumps(data)))
    assert feed(restored, later) == feed(live, later)
    assert any(b'"c-ack"' in line for line in feed(restored, [later[0]]))


def test_an_acknowledged_notification_is_unacknowledged_after_its_timeout_but_never_escalates() -> (
    None
):
    from tests.unit.rules.helpers import carrier_exception

    lost = carrier_exception("L1", "10:00", "lost")
    [raised] = run([lost]).of("logistics.lost_or_damaged")  # critical: ack timeout 30 min
    result = run([lost, command("acknowledge", raised, "10:05"), tick("10:35:01"), tick("18:00")])
    assert [(e.state, e.status) for e in result.of("logistics.lost_or_damaged")] == [
        ("raised", "open"),
        ("acknowledged", "acknowledged"),
        ("unacknowledged", "open"),
    ]
