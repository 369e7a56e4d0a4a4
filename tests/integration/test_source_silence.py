"""Source silence on the real broker: a worker on the wall clock, one stream stops, then returns.

The rule's threshold comes from a copy of ``rules/`` with ``silence: 3s`` (the shipped default is
15 minutes), which is also how an operator tunes it. What must hold, in order:

1. while payments and logistics flow and orders do not, one ``system.source_silent`` is raised
   for the subject ``orders``;
2. an order whose ``payment.paid_not_updated`` deadline passes during that silence raises
   nothing: the rule waits on the orders stream, so it is held;
3. when orders return with their backlog, the silence resolves; the held order whose status update
   was in the backlog (dated before its deadline) never raises, and the one whose update never
   comes raises once the hold lifts.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from orderwatch.broker import EmbeddedBroker
from tests.factories import created, logistics, paid, status
from tests.integration.harness import Collector, Topics, WorkerProcess, produce

pytestmark = [pytest.mark.integration, pytest.mark.serial]

RULES = Path(__file__).resolve().parents[2] / "rules"
SILENCE = 3.0
#: the held orders' payment deadline passes this long after the test starts
DUE_IN = 9.0


def at(offset: float) -> str:
    """An RFC 3339 instant ``offset`` seconds from now (wall clock: the worker's clock)."""
    moment = datetime.fromtimestamp(time.time() + offset, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def silence_rules(workdir: Path) -> Path:
    rules = workdir / "rules"
    shutil.copytree(RULES, rules)
    path = rules / "system.source_silent.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["params"]["silence"] = f"{SILENCE:g}s"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return rules


def found(out: Collector, rule_id: str, subject: str, state: str) -> bool:
    return any(
        e["rule_id"] == rule_id and e["subject"] == subject and e["state"] == state
        for e in out.values()
    )


async def test_a_silent_stream_raises_once_holds_its_timeouts_and_resolves_on_return(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topics = Topics()
    await topics.create(broker.bootstrap)
    worker = WorkerProcess(
        broker.bootstrap, topics, tmp_path, rules_dir=str(silence_rules(tmp_path))
    ).start()
    beats = ["HB1", "HB2", "HB3"]
    ten_minutes = 600.0
    began = time.time()
    paid_at = at(DUE_IN - ten_minutes)  # so payment.paid_not_updated is due DUE_IN s from now
    start: list[dict[str, Any]] = []
    for oid in [*beats, "O-held", "O-late"]:
        start.append(created(oid, at(DUE_IN - ten_minutes - 60)))
        start.append(paid(oid, paid_at, payment_id=f"P-{oid}"))
    start += [status(oid, "paid", at(DUE_IN - ten_minutes + 1)) for oid in beats]
    start += [logistics("shipped", oid, at(0)) for oid in beats]
    orders_flow = asyncio.Event()

    async def heartbeat() -> None:
        """Payments and logistics keep flowing; orders only while ``orders_flow`` is set."""
        while True:
            beat: list[dict[str, Any]] = []
            for oid in beats:
                beat.append(paid(oid, paid_at, payment_id=f"P-{oid}"))  # a gateway re-callback
                beat.append(logistics("scanned", oid, at(0), location="hub"))
                if orders_flow.is_set():
                    beat.append(status(oid, "paid", at(0)))
            await produce(broker.bootstrap, topics, beat)
            await asyncio.sleep(0.3)

    try:
        async with Collector(broker.bootstrap, topics.exceptions) as out:
            await produce(broker.bootstrap, topics, start)
            beating = asyncio.create_task(heartbeat())
            try:
                await out.wait_for(
                    lambda _: found(out, "system.source_silent", "orders", "raised"),
                    30,
                    "the orders stream reported silent",
                )
                # an absence can only be checked at a moment: once the held deadline has
                # passed by a few sweeps (the worker sweeps every 0.5 s)
                await asyncio.sleep(max(0.0, began + DUE_IN + 2 - time.time()))
                assert worker.alive()
                late = [e for e in out.values() if e["rule_id"] == "payment.paid_not_updated"]
                assert late == [], "timeouts waiting on a silent stream are held"
                silent = [e for e in out.values() if e["rule_id"] == "system.source_silent"]
                assert [(e["subject"], e["state"]) for e in silent] == [("orders", "raised")]

                # the orders backlog arrives: O-held's update was made in time, O-late's never
                await produce(broker.bootstrap, topics, [status("O-held", "paid", paid_at)])
                orders_flow.set()
                await out.wait_for(
                    lambda _: found(out, "system.source_silent", "orders", "resolved"),
                    30,
                    "the silence resolved",
                )
                await out.wait_for(
                    lambda _: found(out, "payment.paid_not_updated", "O-late", "raised"),
                    30,
                    "the held timeout of O-late judged after the hold",
                )
            finally:
                beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beating
            held = [e for e in out.values() if e["subject"] == "O-held"]
            assert held == [], "O-held's update arrived with the backlog, dated in time"
            raised = [
                e
                for e in out.values()
                if e["rule_id"] == "system.source_silent" and e["state"] == "raised"
            ]
            assert len(raised) == 1, "one exception for the silence, not one per order"
    finally:
        worker.stop()
