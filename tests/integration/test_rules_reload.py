"""Hot reload on the real broker: a worker takes a changed rules directory while traffic flows.

A worker on the wall clock polls its rules directory every half second. Healthy orders flow the
whole time. What must hold:

1. the worker applies a changed, valid set without a restart (same process, version metric
   changes), and the new threshold is used at once: a ``payment.paid_not_updated`` deadline
   that the old 10-minute threshold puts half a minute ahead fires now, at the new 5 minutes;
2. an invalid set is refused whole and counted; the worker keeps running the previous set (a
   new order still gets the 5-minute threshold);
3. nothing is lost: every event produced is consumed, and the healthy orders raise nothing.
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

from orderwatch.broker import EmbeddedBroker
from tests.factories import created, paid, status
from tests.integration.harness import Collector, Topics, WorkerProcess, produce, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.serial]

RULES = Path(__file__).resolve().parents[2] / "rules"
RULE = "payment.paid_not_updated"


def at(offset: float) -> str:
    moment = datetime.fromtimestamp(time.time() + offset, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def set_threshold(rules: Path, value: str) -> None:
    path = rules / f"{RULE}.yaml"
    text = path.read_text(encoding="utf-8")
    lines = [
        f"  threshold: {value}" if line.startswith("  threshold:") else line
        for line in text.splitlines()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def raised_for(out: Collector, order_id: str) -> list[dict[str, Any]]:
    return [e for e in out.values() if e["order_id"] == order_id and e["state"] == "raised"]


async def test_a_worker_reloads_its_rules_under_traffic_and_keeps_them_when_invalid(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    topics = Topics()
    await topics.create(broker.bootstrap)
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    worker = WorkerProcess(
        broker.bootstrap,
        topics,
        tmp_path,
        rules_dir=str(rules),
        rules_reload_interval="0.5",
    ).start()
    pid = worker.proc.pid if worker.proc else None

    def versions() -> int:
        """How many rule versions the worker's /metrics shows live."""
        return worker.get("/metrics")[1].decode().count("orderwatch_rules_version_info{")

    produced = 0
    stop = asyncio.Event()

    async def traffic() -> None:
        """A healthy order (created, paid, status paid) every 50 ms until told to stop."""
        nonlocal produced
        n = 0
        while not stop.is_set():
            oid = f"OK-{n}"
            batch = [
                created(oid, at(-1)),
                paid(oid, at(-0.5), payment_id=f"P-{oid}"),
                status(oid, "paid", at(0)),
            ]
            await produce(broker.bootstrap, topics, batch)  # type: ignore[arg-type]
            produced += len(batch)
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)

    async with Collector(broker.bootstrap, topics.exceptions) as out:
        flowing = asyncio.create_task(traffic())
        try:
            first = worker.metric("orderwatch_rules_version_info")
            assert first == 1 and versions() == 1

            # 1. paid 9.5 minutes ago: the 10-minute deadline is 30 s ahead
            await produce(
                broker.bootstrap, topics, [created("O-A", at(-600)), paid("O-A", at(-570))]
            )
            produced += 2
            # read (its deadline scheduled at 10 minutes) before the rules change
            wait_until(
                lambda: worker.metric("orderwatch_events_consumed_total") >= produced,
                15,
                "O-A read",
            )
            assert raised_for(out, "O-A") == []
            set_threshold(rules, "5m")
            began = time.monotonic()
            found = await out.wait_for(
                lambda _: bool(raised_for(out, "O-A")), 20, "O-A raised at the new threshold"
            )
            assert found and time.monotonic() - began < 25, "before the old deadline"
            [raised] = raised_for(out, "O-A")
            assert raised["evidence"]["values"]["threshold"] == "5m"
            paid_at = datetime.fromisoformat(raised["evidence"]["values"]["paid_at"])
            assert datetime.fromisoformat(raised["event_time"]) - paid_at == (
                datetime.fromisoformat("2026-01-01T00:05:00+00:00")
                - datetime.fromisoformat("2026-01-01T00:00:00+00:00")
            )
            assert worker.metric("orderwatch_rules_reloads_total", result="applied") == 1
            assert worker.proc is not None and worker.proc.pid == pid and worker.alive()

            # 2. an invalid set is refused; the 5-minute set keeps running
            set_threshold(rules, "soon")
            wait_until(
                lambda: worker.metric("orderwatch_rules_reloads_total", result="refused") == 1,
                15,
                "the invalid set to be refused",
            )
            assert versions() == 1, "still one version live"
            assert "refused" in worker.log()
            await produce(
                broker.bootstrap, topics, [created("O-B", at(-400)), paid("O-B", at(-330))]
            )
            produced += 2
            await out.wait_for(
                lambda _: bool(raised_for(out, "O-B")), 20, "O-B raised by the kept 5m set"
            )
            assert raised_for(out, "O-B")[0]["evidence"]["values"]["threshold"] == "5m"
        finally:
            stop.set()
            await flowing
        # 3. nothing lost, no restart, healthy orders quiet
        wait_until(
            lambda: worker.metric("orderwatch_events_consumed_total") >= produced,
            30,
            f"all {produced} events consumed",
        )
        assert worker.metric("orderwatch_events_consumed_total") == produced
        assert worker.proc is not None and worker.proc.pid == pid and worker.alive()
        noisy = [e for e in out.values() if e["order_id"] and e["order_id"].startswith("OK-")]
        assert noisy == []
    worker.stop()
