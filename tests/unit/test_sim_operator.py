"""The demo's simulated operator decides from exception events alone, like any team's tool."""

from __future__ import annotations

from typing import Any

import orjson

from orderwatch.events.codec import decode_event
from orderwatch.simulation.operators import Operator, _pick


def event(ex: str, rule: str, state: str, seq: int, status: str, **f: Any) -> dict[str, Any]:
    return {
        "exception_id": ex,
        "rule_id": rule,
        "subject": f"S-{ex}",
        "state": state,
        "seq": seq,
        "status": status,
        **f,
    }


def ids(n: int, chosen: bool) -> list[str]:
    """Exception ids the operator picks (or not) for an acknowledgement."""
    out, i = [], 0
    while len(out) < n:
        if _pick(f"ex-{i}", "ack", 2) == chosen:
            out.append(f"ex-{i}")
        i += 1
    return out


def test_acknowledge_some_snooze_one_resolve_notifications_one_false_positive() -> None:
    op = Operator(think=3.0)
    a, b, c, d = ids(4, chosen=True)
    [skipped] = ids(1, chosen=False)
    rules = {a: "payment.paid_not_updated", b: "fraud.abnormal_quantity",
             c: "fraud.blacklisted", d: "logistics.lost_or_damaged",
             skipped: "payment.paid_not_updated"}  # fmt: skip
    for ex, rule in rules.items():
        op.read(event(ex, rule, "raised", 1, "open"), now=0.0)
    assert op.due(2.9) == [], "it thinks first"
    acks = op.due(3.0)
    assert {c["exception_id"] for c in acks} == {a, b, c, d}
    for cmd in acks:
        decoded = decode_event(orjson.dumps(cmd))
        assert decoded.type == "command.acknowledge"
        assert cmd["expected_status"] == "open" and cmd["source"] == "sim-operator"
        assert cmd["rule_id"] == rules[cmd["exception_id"]]
    assert op.due(100.0) == [], "each command once"
    # the acknowledgements come back on the topic, in the order they were read
    for ex in (a, b, c, d):
        acked = event(ex, rules[ex], "acknowledged", 2, "acknowledged", acknowledged_by="ops-demo")
        op.read(acked, 10.0)
    then = {c["exception_id"]: c for c in op.due(13.0)}
    assert then[a]["type"] == "command.snooze" and then[a]["for"] == "1h", "the first is snoozed"
    assert then[b]["resolution"] == "false_positive", "the first fraud notification"
    assert then[c]["resolution"] == "fixed" and then[d]["resolution"] == "fixed"
    assert op.sent == {
        "acknowledge": 4,
        "snooze": 1,
        "resolve:false_positive": 1,
        "resolve:fixed": 2,
    }


def test_plans_for_a_status_left_meanwhile_are_dropped_and_old_events_ignored() -> None:
    op = Operator(think=1.0)
    [a] = ids(1, chosen=True)
    op.read(event(a, "payment.paid_not_updated", "raised", 1, "open"), 0.0)
    op.read(
        event(a, "payment.paid_not_updated", "resolved", 2, "resolved", resolved_by="rule"), 0.5
    )
    op.read(event(a, "payment.paid_not_updated", "raised", 1, "open"), 0.6)  # re-delivered
    assert op.due(5.0) == []
    # someone else's acknowledgement is not the operator's to follow up
    [b] = ids(2, chosen=True)[1:]
    by_bob = event(b, "fraud.blacklisted", "acknowledged", 2, "acknowledged", acknowledged_by="bob")
    op.read(by_bob, 0.0)
    assert op.due(5.0) == []
