"""Watermark alignment: a backfill read in event-time mode parks a bounded number of events.

The whole backlog is on the broker before the worker starts (a past day, or a worker catching up
after downtime). Without alignment the router reads every input partition at the same rate of
messages, so a sparse stream runs hours of event time ahead of a dense one and everything read
ahead of the slowest waits, parked in its shard, until the clock reaches it: most of the backlog
at once. With ``ORDERWATCH_ALIGN_DRIFT`` the partitions read too far ahead are paused until the
others catch up; the parked events stay a fraction of the backlog, and the exceptions are still
exactly replay's (nothing lost, reordered or renamed).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orderwatch.broker import EmbeddedBroker
from tests.integration.harness import Collector, Topics, WorkerProcess, produce
from tests.integration.test_worker_runtime import converge, replayed, scenario

pytestmark = pytest.mark.integration

#: the backlog's orders (~40 events each) and the bound the test holds the worker to. What may
#: wait does not grow with the backlog (16-20k parked at 2,000 orders and at 4,000: the inputs
#: read on for up to ``HOLD_READ_AHEAD`` records while the empty command partitions hold the
#: clock at the start); 4,000 keeps that a small share, where alignment off parks most of it
ORDERS = 4_000
DRIFT = "60"
#: parked events may not exceed this share of the backlog (without alignment: most of it)
SHARE = 0.25


class Sampler:
    """Polls two gauges of a worker from a thread until stopped; keeps each one's largest."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.parked = 0.0
        self.paused = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            self.parked = max(self.parked, self.worker.metric("orderwatch_parked_events"))
            self.paused = max(self.paused, self.worker.metric("orderwatch_inputs_paused"))

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


async def test_a_backfill_parks_a_bounded_share_and_equals_replay(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    events = scenario(seed=13, orders=ORDERS)
    expected = replayed(events)
    await produce(broker.bootstrap, topics, list(events))
    worker = WorkerProcess(broker.bootstrap, topics, tmp_path, clock="event", align_drift=DRIFT)
    workers.append(worker.start())
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        with Sampler(worker) as seen:
            await converge(out, expected, 300)
    print(f"backlog {len(events)}, at most {seen.parked:.0f} parked, {seen.paused:.0f} paused")
    assert 0 < seen.parked <= SHARE * len(events), (
        f"{seen.parked:.0f} events parked at once, of a backlog of {len(events)}"
    )
    assert seen.paused >= 1, "the backfill paused no input: nothing was bounded"
