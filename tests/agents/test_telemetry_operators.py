"""v2 metrics of the operators' loop: commands by type and result, MTTA, MTTR, status gauge."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from orderwatch.agents.telemetry import Telemetry
from orderwatch.engine import Engine
from orderwatch.events.codec import decode_event
from orderwatch.events.exception import ExceptionEvent
from orderwatch.metrics import Metrics
from orderwatch.rulefiles import load_catalog
from tests.factories import created, ts

RULE = "fraud.abnormal_quantity"
BULK = [{"sku": "S", "quantity": 50, "unit_price": "1.00"}]


def at(clock: str) -> float:
    return datetime.fromisoformat(ts(clock).replace("Z", "+00:00")).timestamp()


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def command(kind: str, cid: str, clock: str, ex: str, **fields: Any) -> Any:
    return decode_event(
        orjson.dumps(
            {
                "event_id": cid,
                "type": f"command.{kind}",
                "occurred_at": ts(clock),
                "source": "cli",
                "exception_id": ex,
                "rule_id": RULE,
                "subject": "Q1",
                "actor": "alice",
                **fields,
            }
        )
    )


def flagged(engine: Engine, order_id: str) -> tuple[str, list[ExceptionEvent]]:
    """A bulk order at 10:00: its fraud.abnormal_quantity exception (a notification)."""
    event = decode_event(orjson.dumps(created(order_id, "10:00", items=BULK, total="50.00")))
    out = engine.step(event, at("10:00"))
    [raised] = [e for e in out if e.rule_id == RULE]
    return raised.exception_id, out


def test_replies_are_counted_by_command_type_and_result_and_times_observed() -> None:
    metrics = Metrics()
    telemetry = Telemetry(metrics, wall_clock=False)
    engine = telemetry.engine(load_catalog())
    ex, published = flagged(engine, "Q1")
    for cid, clock, cmd in (
        ("c1", "10:04", command("snooze", "c1", "10:04", ex, **{"for": "1h"})),  # not acked
        ("c2", "10:05", command("acknowledge", "c2", "10:05", ex)),
        ("c3", "10:06", command("acknowledge", "c3", "10:06", ex)),  # a repeat: MTTA once
        ("c4", "10:07", command("acknowledge", "c4", "10:07", "nope")),
        ("c5", "10:30", command("resolve", "c5", "10:30", ex, resolution="false_positive")),
    ):
        published += engine.step(cmd, at(clock))
        assert [r.command_id for r in engine.take_replies()] == [cid]
    for exc in published:
        telemetry.on_exception(exc, None)
    c = "orderwatch_commands_total"
    assert value(metrics, c, type="command.snooze", result="invalid_transition") == 1
    assert value(metrics, c, type="command.acknowledge", result="accepted") == 2
    assert value(metrics, c, type="command.acknowledge", result="unknown_exception") == 1
    assert value(metrics, c, type="command.resolve", result="accepted") == 1
    labels = {"rule_id": RULE, "owner": "risk"}
    assert value(metrics, "orderwatch_time_to_acknowledge_seconds_count", **labels) == 1
    assert value(metrics, "orderwatch_time_to_acknowledge_seconds_sum", **labels) == 300
    resolved = {**labels, "resolved_by": "operator"}
    assert value(metrics, "orderwatch_time_to_resolve_seconds_count", **resolved) == 1
    assert value(metrics, "orderwatch_time_to_resolve_seconds_sum", **resolved) == 1800


def test_the_status_gauge_counts_open_exceptions_by_status() -> None:
    metrics = Metrics()
    telemetry = Telemetry(metrics, wall_clock=False)
    engine = telemetry.engine(load_catalog())
    ex, _ = flagged(engine, "Q1")
    flagged(engine, "Q2")
    engine.step(command("acknowledge", "c1", "10:01", ex), at("10:01"))
    engine.take_replies()
    telemetry.refresh([engine], consumer=None, period=0.0)
    g = "orderwatch_exceptions_by_status"
    assert value(metrics, g, rule_id=RULE, status="acknowledged") == 1
    assert value(metrics, g, rule_id=RULE, status="open") == 1
    assert value(metrics, g, rule_id=RULE, status="snoozed") == 0
