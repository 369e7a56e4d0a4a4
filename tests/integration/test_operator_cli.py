"""``orderwatch exceptions|ack|snooze|resolve|...`` as a person runs them: real broker, real worker.

The CLI runs as a subprocess with only the environment a user would have (bootstrap and topic
names); it finds exceptions on the exceptions topic, sends commands to the commands topic and
prints the worker's reply. Exit statuses are part of the interface for scripts: 0 accepted,
1 rejected, 2 cannot send, 3 no reply in time.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderwatch.broker import EmbeddedBroker
from tests.factories import created, paid
from tests.integration.harness import Collector, Topics, WorkerProcess, produce

pytestmark = pytest.mark.integration

WITHIN = 60.0


def now_iso(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat().replace("+00:00", "Z")


class Cli:
    """``orderwatch ...`` in a subprocess, pointed at one test's topics."""

    def __init__(self, bootstrap: str, topics: Topics, actor: str = "alice") -> None:
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("ORDERWATCH_") and k not in ("USER", "LOGNAME")
        }
        self.env.update(topics.env(), ORDERWATCH_BOOTSTRAP_SERVERS=bootstrap)
        self.env["ORDERWATCH_ACTOR"] = actor

    def __call__(self, *args: str, timeout: float = WITHIN) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orderwatch.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout + 30,
        )

    def rows(self, *filters: str) -> list[dict[str, Any]]:
        done = self("exceptions", "--json", *filters)
        assert done.returncode == 0, done.stderr
        return [orjson.loads(line) for line in done.stdout.splitlines()]


def poll(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(0.2)


def test_a_person_lists_acknowledges_snoozes_and_resolves(
    broker: EmbeddedBroker, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    topics = Topics()
    asyncio.run(topics.create(broker.bootstrap))
    workers.append(WorkerProcess(broker.bootstrap, topics, tmp_path).start())
    cli = Cli(broker.bootstrap, topics)

    bulk = [{"sku": "SKU-9", "quantity": 50, "unit_price": "1.00"}]
    events = [
        created("Q1", now_iso(minutes=-2), items=bulk, total="50.00"),
        created("Q2", now_iso(minutes=-1), items=bulk, total="50.00"),
        created("R1", now_iso(minutes=-1), remark="加急 please"),
    ]
    asyncio.run(produce(broker.bootstrap, topics, events))

    def three() -> list[dict[str, Any]]:
        rows = cli.rows()
        return rows if len(rows) == 3 else []

    rows = poll(three, WITHIN, "three open exceptions listed from the topic")
    assert {r["rule_id"] for r in rows} == {"fraud.abnormal_quantity", "customer.remark_attention"}
    assert all(r["status"] == "open" for r in rows)
    # filters
    assert [r["subject"] for r in cli.rows("--owner", "customer_service")] == ["R1"]
    assert {r["subject"] for r in cli.rows("--rule", "fraud.")} == {"Q1", "Q2"}
    assert cli.rows("--severity", "critical") == []
    q1 = next(r["exception_id"] for r in rows if r["subject"] == "Q1")
    q2 = next(r["exception_id"] for r in rows if r["subject"] == "Q2")
    r1 = next(r["exception_id"] for r in rows if r["subject"] == "R1")

    # acknowledge: rule_id and subject looked up on the topic, actor from the environment
    done = cli("ack", q1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"acknowledge: accepted; {q1} is now acknowledged" in done.stdout

    # snooze needs acknowledged: the detector rejects it on an open one, exit status 1
    done = cli("snooze", q2, "--for", "2h", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    reply = orjson.loads(done.stdout)
    assert reply["accepted"] is False and reply["reason"] == "invalid_transition"
    assert reply["status"] == "open"

    done = cli("snooze", q1, "--for", "2h", "--expected-status", "acknowledged", "--actor", "bob")
    assert done.returncode == 0, done.stdout + done.stderr
    # a stale view is refused
    done = cli("ack", q1, "--expected-status", "open", "--json")
    assert done.returncode == 1
    assert orjson.loads(done.stdout)["reason"] == "stale"

    done = cli("assign", r1, "carol")
    assert done.returncode == 0, done.stdout + done.stderr
    done = cli("comment", r1, "customer called from 13812345678")
    assert done.returncode == 0, done.stdout + done.stderr
    done = cli("resolve", q2, "false_positive", "--note", "a wholesale buyer")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is now resolved" in done.stdout

    # the listing follows the topic: q2 gone, q1 snoozed by bob, r1 assigned to carol
    def settled() -> dict[str, dict[str, Any]]:
        rows = {r["exception_id"]: r for r in cli.rows()}
        ok = set(rows) == {q1, r1} and rows[q1]["status"] == "snoozed" and rows[r1]["assignee"]
        return rows if ok else {}

    rows_now = poll(settled, WITHIN, "the listing to show the commands' effects")
    assert rows_now[q1]["acknowledged_by"] == "alice"  # who acknowledged; bob only snoozed
    assert rows_now[q1]["snoozed_until"]
    assert rows_now[r1]["assignee"] == "carol"
    assert [r["exception_id"] for r in cli.rows("--status", "snoozed")] == [q1]
    table = cli("exceptions")  # for people: a table
    assert table.returncode == 0 and "2 exceptions" in table.stdout
    assert q1 in table.stdout and r1 in table.stdout and q2 not in table.stdout
    assert "alice until" in table.stdout and "carol" in table.stdout
    assert [r["exception_id"] for r in cli.rows("--status", "resolved")] == [q2]

    # a resolved one can be reopened; a script retrying with one command id gets one effect
    done = cli("reopen", q2, "--command-id", "retry-1", "--json")
    assert done.returncode == 0 and orjson.loads(done.stdout)["status"] == "open"
    again = cli("reopen", q2, "--command-id", "retry-1", "--json")
    assert again.returncode == 0 and again.stdout == done.stdout

    async def published() -> list[dict[str, Any]]:
        async with Collector(broker.bootstrap, topics.exceptions) as out:
            await out.wait_for(
                lambda recs: sum(orjson.loads(r.value)["state"] == "reopened" for r in recs) >= 1,
                WITHIN,
                "the reopened event",
            )
            return out.values()

    events_out = asyncio.run(published())
    assert sum(e["state"] == "reopened" for e in events_out) == 1, "the retry had no effect"
    [commented] = [e for e in events_out if e["state"] == "commented"]
    assert "13812345678" not in commented["note"] and commented["note"].endswith("5678")

    # the worker's own scrape counts what happened (commands by type and result, MTTA, MTTR)
    worker = workers[0]

    def counted() -> bool:
        m = worker.metric
        return (
            m("orderwatch_commands_total", type="command.acknowledge", result="accepted") == 1
            and m("orderwatch_commands_total", type="command.acknowledge", result="stale") == 1
            and m("orderwatch_commands_total", type="command.snooze", result="invalid_transition")
            == 1
            and m("orderwatch_commands_total", type="command.reopen", result="accepted") == 2
            and m("orderwatch_time_to_acknowledge_seconds_count", owner="risk") == 1
            and m("orderwatch_time_to_resolve_seconds_count", resolved_by="operator") == 1
            and m("orderwatch_exceptions_by_status", status="snoozed") == 1
        )

    poll(counted, WITHIN, "the worker's metrics to count the commands")
    # and every series the dashboard and alerts query is in this real scrape
    from prometheus_client.parser import text_string_to_metric_families

    from tests.unit.test_observability_names import _SUFFIXES, _rules, _used_names

    status, body = worker.get("/metrics")
    assert status == 200
    scraped = {
        family.name + suffix
        for family in text_string_to_metric_families(body.decode())
        for suffix in _SUFFIXES.get(family.type, ("",))
    }
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    used = set().union(*_used_names().values())
    assert used - scraped - recorded == set()

    # unknown exception: nothing on the topic -> the CLI refuses to guess (exit 2) ...
    done = cli("ack", "no-such-id")
    assert done.returncode == 2 and "no exception no-such-id" in done.stderr
    # ... unless told where it lives: the detector answers unknown_exception
    done = cli("ack", "no-such-id", "--rule-id", "fraud.abnormal_quantity", "--subject", "Q1")
    assert done.returncode == 1 and "unknown_exception" in done.stdout


def test_no_worker_means_a_timeout_exit_status(broker: EmbeddedBroker) -> None:
    topics = Topics()
    asyncio.run(topics.create(broker.bootstrap, partitions=1))
    cli = Cli(broker.bootstrap, topics)
    started = time.monotonic()
    done = cli("ack", "x", "--rule-id", "r", "--subject", "s", "--timeout", "2")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no reply" in done.stderr
    assert time.monotonic() - started < 30

    # the command itself was sent, keyed by its exception_id, with the actor from the env
    async def sent() -> list[Any]:
        async with Collector(broker.bootstrap, topics.commands) as got:
            return await got.wait_for(lambda recs: len(recs) >= 1, WITHIN, "the command")

    [record] = asyncio.run(sent())
    command = orjson.loads(record.value)
    assert record.key == b"x"
    assert command["type"] == "command.acknowledge" and command["actor"] == "alice"
    assert command["source"] == "cli" and command["event_id"].startswith("cmd-")


def test_approve_and_reject_remediation_actions(
    broker: EmbeddedBroker, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """``orderwatch approve|reject ACTION_ID``: the action's exception is found from the actions
    topic, the command is section 8's, the exit status is the other commands' convention."""
    topics = Topics()
    asyncio.run(topics.create(broker.bootstrap))
    workers.append(WorkerProcess(broker.bootstrap, topics, tmp_path).start())
    cli = Cli(broker.bootstrap, topics, actor="ada")
    events = []
    for order in ("D1", "D2"):  # each paid twice: a refund of the second payment to approve
        events += [
            created(order, now_iso(seconds=-30)),
            paid(order, now_iso(seconds=-20), payment_id=f"{order}-P1"),
            paid(order, now_iso(seconds=-10), payment_id=f"{order}-P2"),
        ]
    asyncio.run(produce(broker.bootstrap, topics, events))

    def statuses(records: list[Any]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in records:
            doc = orjson.loads(r.value)
            out.setdefault(doc["target"], []).append(doc["status"])
        return out

    async def actions(check: Callable[[dict[str, list[str]]], bool], what: str) -> list[Any]:
        async with Collector(broker.bootstrap, topics.actions) as got:
            return await got.wait_for(lambda recs: check(statuses(recs)), WITHIN, what)

    records = asyncio.run(
        actions(lambda s: s.get("D1-P2") == s.get("D2-P2") == ["awaiting_approval"], "2 refunds")
    )
    ids = {orjson.loads(r.value)["target"]: orjson.loads(r.value)["action_id"] for r in records}

    done = cli("approve", ids["D1-P2"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "approve: accepted" in done.stdout and ids["D1-P2"] in done.stdout
    done = cli("reject", ids["D2-P2"], "--reason", "customer 13812345678 asked to keep it")
    assert done.returncode == 0, done.stdout + done.stderr
    asyncio.run(
        actions(
            lambda s: (
                s.get("D1-P2", [])[-1:] == ["requested"] and s.get("D2-P2", [])[-1:] == ["rejected"]
            ),
            "requested and rejected",
        )
    )

    # the reason went out masked, with the command section 8 defines
    async def commands() -> list[Any]:
        async with Collector(broker.bootstrap, topics.commands) as got:
            return await got.wait_for(lambda recs: len(recs) >= 2, WITHIN, "the two commands")

    sent = {c["type"]: c for c in (orjson.loads(r.value) for r in asyncio.run(commands()))}
    reject = sent["command.reject"]
    assert reject["action_id"] == ids["D2-P2"] and reject["actor"] == "ada"
    assert reject["note"] == "customer *******5678 asked to keep it"
    assert reject["rule_id"] == "payment.duplicate" and reject["subject"] == "D2"

    # decided already: the detector says invalid_transition, exit status 1
    done = cli("approve", ids["D1-P2"])
    assert done.returncode == 1 and "invalid_transition" in done.stdout
    # an action nobody ever asked for: nothing to send, exit status 2
    done = cli("approve", "no-such-action")
    assert done.returncode == 2 and "no action no-such-action" in done.stderr
    done = cli("reject", ids["D1-P2"])  # no --reason
    assert done.returncode == 2
