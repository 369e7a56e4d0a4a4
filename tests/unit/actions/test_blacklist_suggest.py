"""blacklist.suggest (CONTRACT sections 10 and 11): approved, it puts the customer on the blacklist.

``fraud.frequent_refunds`` suggests its customer for the blacklist (mode approval). Approving the
suggestion makes a ``blacklist.added`` (kind ``customer_id``, the value, a reason naming the rule
and the approver) for the blacklist topic, and the action succeeds: orderwatch carries it out
itself. The detector reads the blacklist topic, so the customer's next order is
``fraud.blacklisted``. The action event carries only the value's hash.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.factories import created, paid, plus, refunded
from tests.unit.actions.book import command, rules_with, run

RULE = "fraud.frequent_refunds"
DAY0 = "2026-11-01T10:00:00Z"


def _refunds(customer: str = "C7") -> list[dict[str, Any]]:
    """Three orders of ``customer`` refunded within 30 days: the third is flagged."""
    events: list[dict[str, Any]] = []
    for n, day in enumerate((0, 5, 10), 1):
        at = plus(DAY0, days=day)
        oid = f"O{n}"
        events += [
            created(oid, at, customer_id=customer),
            paid(oid, plus(at, minutes=1), payment_id=f"P-{oid}"),
            refunded(oid, plus(at, hours=1), payment_id=f"P-{oid}"),
        ]
    return events


def _suggested() -> tuple[Any, Any]:
    r = run(_refunds())
    [suggest] = r.of("blacklist.suggest")
    assert suggest.status == "awaiting_approval" and suggest.order_id == "O3"
    return r.exception(RULE), suggest


def _next_order(at: str) -> dict[str, Any]:
    return created("O9", at, customer_id="C7")


def test_the_suggestion_carries_the_hash_never_the_customer_id() -> None:
    _, suggest = _suggested()
    assert suggest.params == {
        "kind": "customer_id",
        "value_hash": hashlib.sha256(b"C7").hexdigest()[:16],
    }
    assert "C7" not in suggest.model_dump_json()


def test_approved_it_blacklists_the_customer_and_the_next_order_is_blacklisted() -> None:
    e, suggest = _suggested()
    approve = command("approve", "c1", plus(DAY0, days=11), e, action_id=suggest.action_id)
    before = run([*_refunds(), _next_order(plus(DAY0, days=10, hours=2))])
    assert [x for x in before.exceptions if x.rule_id == "fraud.blacklisted"] == []
    r = run([*_refunds(), approve, _next_order(plus(DAY0, days=12))])
    assert r.statuses("blacklist.suggest") == ["awaiting_approval", "requested", "succeeded"]
    [entry] = r.blacklist
    assert entry == {
        "event_id": f"blacklist.suggest|{suggest.action_id}",
        "type": "blacklist.added",
        "occurred_at": "2026-11-12T10:00:00Z",
        "source": "orderwatch",
        "kind": "customer_id",
        "value": "C7",
        "reason": (
            f"fraud.frequent_refunds on order O3 (exception {e.exception_id}, "
            f"action {suggest.action_id}), approved by alice"
        ),
    }
    [blacklisted] = [x for x in r.exceptions if x.rule_id == "fraud.blacklisted"]
    assert blacklisted.order_id == "O9" and blacklisted.state == "raised"
    # and its hold is planned (the default dry run), as for any blacklisted order
    assert [(a.order_id, a.status) for a in r.of("fulfillment.hold")] == [("O9", "planned")]


def test_rejected_expired_or_cancelled_it_blacklists_nobody() -> None:
    e, suggest = _suggested()
    reject = command("reject", "c1", plus(DAY0, days=11), e, action_id=suggest.action_id)
    r = run([*_refunds(), reject, _next_order(plus(DAY0, days=12))])
    assert r.statuses("blacklist.suggest") == ["awaiting_approval", "rejected"]
    assert r.blacklist == []
    assert [x for x in r.exceptions if x.rule_id == "fraud.blacklisted"] == []
    # approval_ttl (24 h) passes: expired, nothing blacklisted
    late = run([*_refunds(), _next_order(plus(DAY0, days=12))])
    assert late.statuses("blacklist.suggest") == ["awaiting_approval", "expired"]
    assert late.blacklist == []


def test_approved_twice_or_read_again_it_is_one_entry() -> None:
    e, suggest = _suggested()
    approve = command("approve", "c1", plus(DAY0, days=11), e, action_id=suggest.action_id)
    again = command("approve", "c2", plus(DAY0, days=11, minutes=1), e, action_id=suggest.action_id)
    r = run([*_refunds(), approve, approve, again])
    assert len(r.blacklist) == 1
    assert [(x.accepted, x.reason) for x in r.replies] == [
        (True, None),
        (True, None),
        (False, "invalid_transition"),
    ]


def test_in_mode_auto_it_blacklists_at_once_naming_the_mode(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, RULE, "- type: blacklist.suggest\n  mode: auto\n")
    r = run(_refunds(), rules=rules)
    assert r.statuses("blacklist.suggest") == ["requested", "succeeded"]
    [entry] = r.blacklist
    assert entry["value"] == "C7" and entry["reason"].endswith(", mode auto")


def test_throttled_it_blacklists_nobody(tmp_path: Path) -> None:
    # two customers flagged within the hour, at most one suggestion an hour
    rules = rules_with(
        tmp_path, RULE, "- type: blacklist.suggest\n  mode: auto\n  max_per_hour: 1\n"
    )
    other = [
        {**x, "event_id": "b-" + x["event_id"], "order_id": "B" + x["order_id"]}
        | (
            {"customer": {**x["customer"], "customer_id": "C8"}}
            if x["type"] == "order.created"
            else {}
        )
        for x in _refunds()
    ]
    for x in other:
        if "payment_id" in x:
            x["payment_id"] = "B" + x["payment_id"]
    r = run(sorted([*_refunds(), *other], key=lambda x: x["occurred_at"]), rules=rules)
    assert sorted(r.statuses("blacklist.suggest")) == ["requested", "succeeded", "throttled"]
    assert [x["value"] for x in r.blacklist] == ["C7"]
