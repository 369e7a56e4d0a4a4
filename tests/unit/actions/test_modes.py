"""Modes (CONTRACT section 10): dry_run plans, auto requests, approval waits, off publishes
nothing; stable action ids; no action for an inhibited exception; conditions."""

from __future__ import annotations

from pathlib import Path

from orderwatch.engine.actions import action_id
from tests.factories import created, paid, plus, refunded, status
from tests.unit.actions.book import result, rules_with, run

PNU = "payment.paid_not_updated"


def _late_update() -> list[dict[str, object]]:
    return [created("O1", "10:00"), paid("O1", "10:00", payment_id="P1")]


def test_dry_run_by_default_plans_the_resync_with_a_stable_id() -> None:
    r = run(_late_update(), until="10:11")
    [planned] = r.actions
    e = r.exception(PNU)
    assert planned.type == "order.resync_status" and planned.status == "planned"
    assert planned.mode == "dry_run"
    assert planned.action_id == action_id(e.exception_id, "order.resync_status", None)
    assert planned.idempotency_key == planned.action_id
    assert (planned.exception_id, planned.rule_id, planned.order_id) == (e.exception_id, PNU, "O1")
    assert planned.target is None and planned.params == {"payment_id": "P1"}
    assert planned.at == e.detected_at
    # the same input again gives the same id
    assert run(_late_update(), until="10:11").actions[0].action_id == planned.action_id


def test_auto_requests_and_a_result_settles_it(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, PNU, "- type: order.resync_status\n  mode: auto\n")
    first = run(_late_update(), until="10:11", rules=rules)
    [requested] = first.actions
    assert requested.status == "requested" and requested.mode == "auto"
    done = run(
        [*_late_update(), result(True, requested, "10:12"), status("O1", "paid", "10:12:30")],
        rules=rules,
    )
    assert done.statuses() == ["requested", "succeeded"]
    # the exception is resolved by its own condition (the status change), not by the result
    assert [e.state for e in done.exceptions] == ["raised", "resolved"]
    assert done.exceptions[1].resolved_by == "rule"
    assert done.exceptions[1].detected_at.isoformat().startswith("2026-11-20T10:12:30")


def test_a_result_alone_never_resolves_the_exception(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, PNU, "- type: order.resync_status\n  mode: auto\n")
    [requested] = run(_late_update(), until="10:11", rules=rules).actions
    r = run([*_late_update(), result(True, requested, "10:12")], until="11:00", rules=rules)
    assert [e.state for e in r.exceptions] == ["raised"]


def test_a_failed_result_and_a_result_read_twice(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, PNU, "- type: order.resync_status\n  mode: auto\n")
    [requested] = run(_late_update(), until="10:11", rules=rules).actions
    fail = result(False, requested, "10:12")
    r = run([*_late_update(), fail, fail, result(True, requested, "10:13")], rules=rules)
    assert r.statuses() == ["requested", "failed"]


def test_off_publishes_nothing(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, PNU, "- type: order.resync_status\n  mode: 'off'\n")
    r = run(_late_update(), until="10:11", rules=rules)
    assert r.exceptions and r.actions == []


def test_no_action_for_an_inhibited_exception() -> None:
    # no order.created: payment.orphan explains the late update, which is inhibited
    r = run([paid("O1", "10:00", payment_id="P1")], until="10:11")
    assert {e.rule_id: e.status for e in r.exceptions} == {
        "payment.orphan": "open",
        PNU: "inhibited",
    }
    assert r.actions == []


def test_released_from_inhibition_it_gets_its_action_then() -> None:
    events = [paid("O1", "10:00", payment_id="P1"), created("O1", "10:20")]
    r = run(events, until="10:21")
    assert [(e.rule_id, e.state) for e in r.exceptions] == [
        ("payment.orphan", "raised"),
        (PNU, "inhibited"),
        ("payment.orphan", "resolved"),
        (PNU, "raised"),
    ]
    [planned] = r.actions
    assert planned.exception_id == r.exceptions[1].exception_id


def test_refund_only_below_an_amount(tmp_path: Path) -> None:
    block = "- type: payment.refund\n  mode: auto\n  when: {max_amount: '100.00'}\n"
    rules = rules_with(tmp_path, "payment.duplicate", block)
    small = [
        created("O1", "10:00", total="50.00"),
        paid("O1", "10:01", payment_id="P1", amount="50.00"),
        paid("O1", "10:02", payment_id="P2", amount="50.00"),
    ]
    [refund] = run(small, rules=rules).actions
    assert (refund.status, refund.target, refund.params) == (
        "requested",
        "P2",
        {"amount": "50.00", "currency": "CNY"},
    )
    large = [
        created("O2", "10:00", total="500.00"),
        paid("O2", "10:01", payment_id="P1", amount="500.00"),
        paid("O2", "10:02", payment_id="P2", amount="500.00"),
    ]
    r = run(large, rules=rules)
    assert r.exception("payment.duplicate").state == "raised" and r.actions == []


def test_one_refund_per_duplicate_payment_never_the_earliest() -> None:
    events = [
        created("O1", "10:00"),
        paid("O1", "10:05", payment_id="P-late"),
        paid("O1", "10:01", payment_id="P-early"),
    ]
    r = run(events)
    [refund] = r.of("payment.refund")
    assert refund.target == "P-late" and refund.status == "awaiting_approval"
    assert refund.action_id == action_id(
        r.exception("payment.duplicate").exception_id, "payment.refund", "P-late"
    )


def test_after_cancel_refunds_the_payment_after_the_cancel() -> None:
    events = [
        created("O1", "10:00"),
        status("O1", "cancelled", "10:05"),
        paid("O1", "10:06", payment_id="P9", amount="199.00"),
    ]
    [refund] = run(events).of("payment.refund")  # (and a resync: the status says cancelled)
    assert (refund.rule_id, refund.target, refund.status) == (
        "payment.after_cancel",
        "P9",
        "awaiting_approval",
    )
    # refunded by hand meanwhile: the exception resolves and the wait is cancelled
    r = run([*events, refunded("O1", "10:30", payment_id="P9")])
    assert r.statuses("payment.refund") == ["awaiting_approval", "cancelled"]


def test_hold_for_a_bad_address_only_before_shipping() -> None:
    from tests.factories import address, logistics

    bad = address(line1="12")
    before = run([created("O1", "10:00", shipping_address=bad)])
    assert [(a.type, a.status, a.params) for a in before.actions] == [
        ("fulfillment.hold", "planned", {"reason": "customer.invalid_address"})
    ]
    shipped = [
        created("O2", "10:00"),
        logistics("shipped", "O2", "11:00"),
        {**created("O2", "10:00"), "type": "order.address_changed", "event_id": "ch"},
    ]
    shipped[2] = {
        "event_id": "ch",
        "type": "order.address_changed",
        "occurred_at": plus("12:00"),
        "source": "oms",
        "order_id": "O2",
        "shipping_address": bad,
    }
    after = run(shipped)
    assert after.exception("customer.invalid_address").state == "raised"
    assert after.actions == []
