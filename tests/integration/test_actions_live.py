"""Remediation actions through the real broker and the real worker (CONTRACT section 10).

A mixed file of events, commands and action results, produced to their topics in phases (each
phase once the previous one's effects are published, as an operator or an executor would act),
gives on ``order-actions`` exactly the action events ``orderwatch replay --actions`` gives, while
the requests pass from the order shards' partitions to the one action shard's partition.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderwatch.broker import EmbeddedBroker
from orderwatch.engine import Engine
from orderwatch.engine.actions import action_id
from orderwatch.engine.lifecycle import exception_id
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import created, end_ticks, paid, plus, status, to_jsonl, ts
from tests.integration.harness import Collector, Topics, WorkerProcess, produce

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[2] / "rules"
PNU = "payment.paid_not_updated"


def _rules(tmp_path: Path) -> Path:
    """The default rules with the resync turned to auto (the demo setting)."""
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    path = folder / f"{PNU}.yaml"
    path.write_text(path.read_text() + "remediation:\n- type: order.resync_status\n  mode: auto\n")
    return folder


def _cmd(kind: str, cid: str, at: str, ex: str, rule: str, subject: str, **f: Any) -> Any:
    return {
        "event_id": cid,
        "type": f"command.{kind}",
        "occurred_at": ts(at),
        "source": "cli",
        "exception_id": ex,
        "rule_id": rule,
        "subject": subject,
        "actor": "alice",
        **f,
    }


def _result(ok: bool, aid: str, order_id: str, at: str) -> dict[str, Any]:
    return {
        "event_id": f"r-{aid[:8]}",
        "type": "action.succeeded" if ok else "action.failed",
        "occurred_at": ts(at),
        "source": "oms",
        "action_id": aid,
        "order_id": order_id,
    }


def phases() -> list[list[dict[str, Any]]]:
    big = created("O3", "10:00", items=[{"sku": "S", "quantity": 50, "unit_price": "1.00"}])
    dup = [
        created("O2", "10:00"),
        paid("O2", "10:01", payment_id="P1"),
        paid("O2", "10:02", payment_id="P2"),
        status("O2", "paid", "10:02:30"),
    ]
    first = [created("O1", "10:00"), paid("O1", "10:00", payment_id="PA"), *dup, big]
    first += [status("T1", "pending_payment", "10:11"), *end_ticks(ts("10:12"))]
    resync_ex = exception_id(PNU, "O1", ts("10:10"))
    resync = action_id(resync_ex, "order.resync_status", None)
    dup_ex = exception_id("payment.duplicate", "O2", "P1|P2")
    refund = action_id(dup_ex, "payment.refund", "P2")
    big_ex = exception_id("fraud.abnormal_quantity", "O3", big["event_id"])
    second = [
        _result(True, resync, "O1", "10:13"),
        _cmd("approve", "c1", "10:14", dup_ex, "payment.duplicate", "O2", action_id=refund),
        _cmd("resolve", "c2", "10:15", big_ex, "fraud.abnormal_quantity", "O3", resolution="fixed"),
    ]
    third = [
        status("O1", "paid", "10:16"),
        _result(False, refund, "O2", "10:17"),
        *end_ticks(plus("10:20")),
    ]
    return [first, second, third]


def _key(raw: bytes) -> bytes:
    """An action event without ``at``: the detector's clock when the status was reached, which
    live runs per shard partition (as ``detected_at`` of exceptions does), while replay has one
    clock for all. Everything else must be the same, byte for byte."""
    data = orjson.loads(raw)
    data.pop("at")
    return orjson.dumps(data)


def offline(events: list[dict[str, Any]], rules: Path) -> list[bytes]:
    out, err, actions = io.BytesIO(), io.StringIO(), io.BytesIO()
    replay(
        io.BytesIO(to_jsonl(events)).readlines(),
        Engine(load_catalog(rules)),
        out,
        err,
        None,
        actions=actions,
    )
    assert err.getvalue() == ""
    return actions.getvalue().splitlines()


def test_the_scenario_covers_what_it_should(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    lines = offline([e for p in phases() for e in p], rules)
    got = [(a["type"], a["status"]) for a in map(orjson.loads, lines)]
    assert ("order.resync_status", "requested") in got
    assert ("order.resync_status", "succeeded") in got
    assert ("payment.refund", "awaiting_approval") in got
    assert ("payment.refund", "requested") in got
    assert ("payment.refund", "failed") in got
    assert ("fulfillment.hold", "planned") in got
    assert ("fulfillment.release", "planned") in got


async def test_actions_through_the_worker_give_what_replay_gives(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    rules = _rules(tmp_path)
    workers.append(
        WorkerProcess(
            broker.bootstrap, topics, tmp_path, clock="event", rules_dir=str(rules)
        ).start()
    )
    async with Collector(broker.bootstrap, topics.actions) as out:
        sent: list[dict[str, Any]] = []
        for phase in phases():
            await produce(broker.bootstrap, topics, phase)
            sent += phase
            want = {_key(x) for x in offline(sent, rules)}
            try:
                await out.wait_for(
                    lambda _, w=want: {_key(r.value) for r in out.records} >= w,
                    60,
                    "live ⊇ replay's",
                )
            except AssertionError as err:
                got = {_key(r.value) for r in out.records}
                raise AssertionError(
                    f"{err}\nmissing: {sorted(want - got)}\nextra: {sorted(got - want)}"
                ) from None
        assert {_key(r.value) for r in out.records} == want
        assert len(out.records) == len(want), "each action event published once"
        for record in out.records:  # keyed by order_id
            assert record.key == orjson.loads(record.value)["order_id"].encode()
