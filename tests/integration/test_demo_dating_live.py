"""The demo's traffic through a real worker: no exception is dated after the wall clock.

``make demo`` sends a simulated day in about a minute. Its healthy events used to carry their
simulated time, up to days ahead of the wall clock: the worker's event-time clock ran ahead with
them, so the exceptions it raised were detected (``detected_at``) and dated (``event_time``) in the
future, and the console showed negative ages. Every demo event is now dated at sending.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from orderwatch.broker import EmbeddedBroker
from orderwatch.simulation.traffic import SimConfig, Simulator, produce
from tests.integration.harness import Collector, Topics, WorkerProcess

pytestmark = pytest.mark.integration

WITHIN = 120.0
#: clocks of one machine; the stamps are rounded to the millisecond
SLACK = 0.01


def test_demo_exceptions_are_never_dated_after_the_wall_clock(
    broker: EmbeddedBroker, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    topics = Topics()
    asyncio.run(topics.create(broker.bootstrap))
    workers.append(WorkerProcess(broker.bootstrap, topics, tmp_path).start())
    streams = topics.streams
    sim = Simulator(SimConfig(seed=3, orders=150, demo=True, anomaly_rate=0.3, start=time.time()))
    received: list[tuple[float, dict[str, object]]] = []

    def raised(records: list[object]) -> int:
        for record in records[len(received) :]:
            received.append((time.time(), orjson.loads(record.value)))  # type: ignore[attr-defined]
        return sum(1 for _, exc in received if exc["state"] == "raised")

    async def scenario() -> None:
        async with Collector(broker.bootstrap, topics.exceptions) as out:
            await produce(sim, broker.bootstrap, rate=2000.0, topics=streams)
            # the backdated timeouts fire demo_lead (5 s) after they were sent
            await out.wait_for(lambda rs: raised(rs) >= 20, WITHIN, "20 exceptions raised")
            raised(out.records)

    asyncio.run(scenario())
    rules = Counter(str(exc["rule_id"]) for _, exc in received if exc["state"] == "raised")
    assert len(rules) >= 10, f"timeouts and instant rules both: {rules}"
    for seen, exc in received:
        for field in ("detected_at", "event_time"):
            at = datetime.fromisoformat(str(exc[field])).timestamp()
            assert at <= seen + SLACK, f"{exc['rule_id']} {field} {at - seen:+.0f} s from now"
