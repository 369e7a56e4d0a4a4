"""Processing errors against the real broker and real worker processes (issue 12).

The faults are test-only (``faults/sitecustomize.py``, loaded by the worker processes these
tests start): an engine that raises on marker events after changing their shard, and a bug
outside the per-message containment. Each test compares the exceptions topic with ``orderwatch
replay`` of the events the worker should have taken into account.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orderwatch.broker import EmbeddedBroker
from tests.integration.harness import Collector, Topics, WorkerProcess, produce, wait_until
from tests.integration.test_worker_runtime import (
    CONSUMED,
    converge,
    live,
    replayed,
    scenario,
)

pytestmark = pytest.mark.integration

FAULTS = Path(__file__).parent / "faults"
EXIT_CRASHED = 70


def faulty_worker(
    bootstrap: str, topics: Topics, workdir: Path, fault: dict[str, str], **settings: str
) -> WorkerProcess:
    worker = WorkerProcess(bootstrap, topics, workdir, clock="event", **settings)
    path = [str(FAULTS), *filter(None, [worker.env.get("PYTHONPATH")])]
    worker.env.update(fault, PYTHONPATH=":".join(path))
    return worker


def with_markers(events: list[dict[str, Any]], prefix: str, count: int) -> list[dict[str, Any]]:
    """After ``count`` successful payments spread over the day, a second one for the same order
    by an event whose id starts with ``prefix``: applied, it would raise payment.duplicate."""
    changes = [i for i, e in enumerate(events) if e["type"] == "payment.succeeded"]
    picked = set(changes[len(changes) // (count + 1) :: len(changes) // (count + 1)][:count])
    out: list[dict[str, Any]] = []
    for i, event in enumerate(events):
        out.append(event)
        if i in picked:
            out.append({**event, "event_id": f"{prefix}{i}", "payment_id": f"{prefix}{i}"})
    assert len(out) == len(events) + count
    return out


def exited(worker: WorkerProcess) -> int:
    wait_until(lambda: not worker.alive(), 60, "the worker to exit")
    assert worker.proc is not None
    return int(worker.proc.returncode)


async def test_dead_letter_policy_skips_a_failing_event_and_loses_nothing_across_a_kill(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    events = scenario(seed=21, orders=80)
    expected = replayed(events)
    mixed = with_markers(events, "boom-", 3)
    assert replayed(mixed) != expected, "the markers would change the result if applied"
    half = len(mixed) // 2
    fault = {"ORDERWATCH_TEST_FAULT_STEP": "boom-"}
    async with (
        Collector(broker.bootstrap, topics.exceptions) as out,
        Collector(broker.bootstrap, topics.dlq) as dlq,
    ):
        first = faulty_worker(broker.bootstrap, topics, tmp_path, fault).start()
        workers.append(first)
        await produce(broker.bootstrap, topics, list(mixed[:half]))
        await out.wait_for(
            lambda _: first.metric(CONSUMED) >= half // 2, 60, "part of the first half read"
        )
        first.kill()
        second = faulty_worker(broker.bootstrap, topics, tmp_path, fault).start()
        workers.append(second)
        await produce(broker.bootstrap, topics, list(mixed[half:]))
        await converge(out, expected, 120)
        await dlq.wait_for(
            lambda r: (
                {dict(x.headers)["orderwatch.error.reason"] for x in r} == {b"internal_error"}
                and len({x.value for x in r}) >= 3
            ),
            30,
            "the three markers dead-lettered",
        )
        assert second.alive(), "a failing event never stops the worker"
    headers = dict(dlq.records[-1].headers)
    assert headers["__connect.errors.exception.class.name"] == b"RuntimeError"
    assert headers["orderwatch.error.stage"] == b"detect"
    message = headers["__connect.errors.exception.message"]
    assert b"13812345678" not in message and b"*******5678" in message, message
    assert second.metric("orderwatch_processing_errors_total") >= 1
    assert {k[0] for k in live(out)} <= {k[0] for k in expected}, "no id replay would not give"


async def test_fail_policy_stops_the_worker_and_a_restart_reads_the_event_again(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    events = with_markers(scenario(seed=22, orders=60), "boom-", 1)
    # the restarted worker reads its dead incarnation's envelopes and reports, whose clock
    # reached the day's end (three weeks on: the day's shards forgotten), then its own router's
    # copies of what was not committed: known as copies (``Shell._unread``), not new orders
    expected = replayed(events)  # the marker is an event like any other
    fault = {"ORDERWATCH_TEST_FAULT_STEP": "boom-"}
    async with (
        Collector(broker.bootstrap, topics.exceptions) as out,
        Collector(broker.bootstrap, topics.dlq) as dlq,
    ):
        failing = faulty_worker(
            broker.bootstrap, topics, tmp_path, fault, on_processing_error="fail"
        ).start()
        workers.append(failing)
        await produce(broker.bootstrap, topics, list(events))
        assert exited(failing) == EXIT_CRASHED
        assert "crashed in" in failing.log() and "13812345678" not in failing.log()
        fixed = WorkerProcess(broker.bootstrap, topics, tmp_path, clock="event").start()
        workers.append(fixed)
        await converge(out, expected, 120)
        assert dlq.records == [], "nothing dead-lettered under the fail policy"
    assert {k[0] for k in live(out)} <= {k[0] for k in expected}


async def test_a_crash_outside_the_containment_commits_nothing_it_did_not_process(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    events = scenario(seed=23, orders=80)
    third = len(events) // 3
    # a valid event, only its id marks it: the envelope carrying it raises once
    crash = {**events[third], "event_id": "crash-1"}
    events = [*events[:third], crash, *events[third:]]
    expected = replayed(events)
    fault = {"ORDERWATCH_TEST_FAULT_CRASH_ONCE": str(tmp_path / "crashed-once")}
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        first = faulty_worker(broker.bootstrap, topics, tmp_path, fault).start()
        workers.append(first)
        await produce(broker.bootstrap, topics, list(events))
        assert exited(first) == EXIT_CRASHED, first.log()[-2000:]
        assert (tmp_path / "crashed-once").exists()
        # its supervisor restarts it (k8s, compose, make demo); the fault has fired already
        second = faulty_worker(broker.bootstrap, topics, tmp_path, fault).start()
        workers.append(second)
        await converge(out, expected, 120)
    assert {k[0] for k in live(out)} <= {k[0] for k in expected}, "no exception under a new id"
