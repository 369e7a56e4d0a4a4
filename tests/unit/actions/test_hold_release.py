"""fulfillment.release (CONTRACT section 10): when the last exception that holds an order (a
hold planned or requested) resolves, in the hold's mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orderwatch.engine.actions import action_id
from tests.factories import address, blacklist, created
from tests.unit.actions.book import command, rules_with, run

_EVENTS = [
    blacklist("customer_id", "C-bad", "09:00"),
    created(
        "O1",
        "10:00",
        customer_id="C-bad",
        items=[{"sku": "S", "quantity": 50, "unit_price": "1.00"}],
        total="50.00",
    ),
]


def _big_and_blacklisted() -> list[dict[str, Any]]:
    """The same events (and event_ids, the anchors of the exception ids) on every call."""
    return list(_EVENTS)


def test_release_after_the_last_holding_exception_resolves() -> None:
    r = run(_big_and_blacklisted())
    holds = r.of("fulfillment.hold")
    assert sorted(a.rule_id for a in holds) == ["fraud.abnormal_quantity", "fraud.blacklisted"]
    assert {a.status for a in holds} == {"planned"}
    big, black = r.exception("fraud.abnormal_quantity"), r.exception("fraud.blacklisted")
    one = command("resolve", "c1", "10:30", big, resolution="false_positive")
    assert run([*_big_and_blacklisted(), one]).of("fulfillment.release") == []
    two = command("resolve", "c2", "10:40", black, resolution="fixed")
    done = run([*_big_and_blacklisted(), one, two])
    [release] = done.of("fulfillment.release")
    assert (release.status, release.mode, release.order_id, release.target) == (
        "planned",
        "dry_run",
        "O1",
        None,
    )
    assert release.exception_id == black.exception_id
    assert release.action_id == action_id(black.exception_id, "fulfillment.release", None)
    assert release.at.isoformat().startswith("2026-11-20T10:40")
    # read again: no second release
    again = run([*_big_and_blacklisted(), one, two, two, one])
    assert len(again.of("fulfillment.release")) == 1


def test_a_bad_address_fixed_releases_its_hold_in_auto_mode(tmp_path: Path) -> None:
    rules = rules_with(
        tmp_path,
        "customer.invalid_address",
        "- type: fulfillment.hold\n  mode: auto\n  when: {not_shipped: true}\n",
    )
    bad = created("O1", "10:00", shipping_address=address(line1="12"))
    fixed = {
        "event_id": "fix",
        "type": "order.address_changed",
        "occurred_at": "2026-11-20T10:20:00Z",
        "source": "oms",
        "order_id": "O1",
        "shipping_address": address(),
    }
    r = run([bad, fixed], rules=rules)
    assert [(a.type, a.status, a.mode) for a in r.actions] == [
        ("fulfillment.hold", "requested", "auto"),
        ("fulfillment.release", "requested", "auto"),
    ]


def test_no_release_without_a_hold(tmp_path: Path) -> None:
    rules = rules_with(
        tmp_path, "fraud.abnormal_quantity", "- type: fulfillment.hold\n  mode: 'off'\n"
    )
    events = [created("O1", "10:00", items=[{"sku": "S", "quantity": 50, "unit_price": "1.00"}])]
    r = run(events, rules=rules)
    e = r.exception("fraud.abnormal_quantity")
    done = run([*events, command("resolve", "c1", "10:30", e, resolution="fixed")], rules=rules)
    assert done.replies[0].accepted and done.actions == []


def test_an_approval_hold_holds_only_once_approved(tmp_path: Path) -> None:
    rules = rules_with(
        tmp_path, "fraud.abnormal_quantity", "- type: fulfillment.hold\n  mode: approval\n"
    )
    events = [created("O1", "10:00", items=[{"sku": "S", "quantity": 50, "unit_price": "1.00"}])]
    r = run(events, rules=rules)
    e, [hold] = r.exception("fraud.abnormal_quantity"), r.actions
    resolve = command("resolve", "c2", "10:40", e, resolution="fixed")
    # never approved: the wait is cancelled and nothing was held, so nothing is released
    waited = run([*events, resolve], rules=rules)
    assert waited.statuses() == ["awaiting_approval", "cancelled"]
    approve = command("approve", "c1", "10:30", e, action_id=hold.action_id)
    held = run([*events, approve, resolve], rules=rules)
    assert [(a.type, a.status) for a in held.actions] == [
        ("fulfillment.hold", "awaiting_approval"),
        ("fulfillment.hold", "requested"),
        ("fulfillment.release", "requested"),
    ]
