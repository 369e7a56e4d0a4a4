"""The demo's simulated operator against the real broker and worker: every part of the loop shows.

Demo traffic (timeouts backdated so they fire within seconds) goes through a real worker; the
operator reads the exceptions topic and sends commands like any team's tool. The exceptions topic
must then carry acknowledgements, one snooze, resolutions by hand as fixed and one as a false
positive, each accepted by the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from orderwatch.broker import EmbeddedBroker
from orderwatch.commands_client import Topics as ClientTopics
from orderwatch.simulation.operators import Operator, run_operator
from orderwatch.simulation.traffic import SimConfig, Simulator, produce
from tests.integration.harness import Collector, Topics, WorkerProcess

pytestmark = pytest.mark.integration

WITHIN = 120.0


def test_the_simulated_operator_acknowledges_snoozes_and_resolves(
    broker: EmbeddedBroker, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    topics = Topics()
    asyncio.run(topics.create(broker.bootstrap))
    workers.append(WorkerProcess(broker.bootstrap, topics, tmp_path).start())
    client = ClientTopics(
        bootstrap=broker.bootstrap,
        exceptions=topics.exceptions,
        commands=topics.commands,
        results=topics.replies,
    )
    streams = topics.streams
    sim = Simulator(SimConfig(seed=3, orders=150, demo=True, anomaly_rate=0.3, start=time.time()))
    operator = Operator(think=0.5)
    replies: Counter[bool] = Counter()

    def states(records: list[object]) -> Counter[str]:
        seen: Counter[str] = Counter()
        for record in records:
            event = orjson.loads(record.value)  # type: ignore[attr-defined]
            seen[event["state"]] += 1
            if event["state"] == "resolved" and event.get("resolved_by") == "operator":
                seen[f"operator:{event['resolution']}"] += 1
        return seen

    def shown(records: list[object]) -> bool:
        seen = states(records)
        return (
            seen["acknowledged"] >= 3
            and seen["snoozed"] == 1
            and seen["operator:false_positive"] == 1
            and seen["operator:fixed"] >= 1
        )

    async def scenario() -> Counter[str]:
        stop = asyncio.Event()
        async with Collector(broker.bootstrap, topics.exceptions) as out:
            acting = asyncio.create_task(
                run_operator(client, stop, operator, on_reply=lambda ok: replies.update([ok]))
            )
            await produce(sim, broker.bootstrap, rate=0.0, topics=streams)
            try:
                await out.wait_for(shown, WITHIN, "the operator's commands on the topic")
            finally:
                stop.set()
                await asyncio.wait_for(acting, 30)
            return states(out.records)

    seen = asyncio.run(scenario())
    assert operator.sent["snooze"] == 1 and operator.sent["resolve:false_positive"] == 1
    assert seen["acknowledged"] <= operator.sent["acknowledge"]
    assert replies[True] >= seen["acknowledged"] + 2
