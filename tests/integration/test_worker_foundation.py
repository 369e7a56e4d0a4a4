"""The foundation's acceptance, against the real broker and the real worker process.

paid-but-not-updated raised within 2 s of its deadline, not raised when the status arrives in time,
resolved under the same id when it arrives late; bad messages dead-lettered with reasons while
later events still flow; replay of the same events gives the same exceptions; no web endpoint.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderwatch.broker import EmbeddedBroker
from orderwatch.engine import Engine
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import created, paid, status, to_jsonl
from tests.integration.harness import Collector, Topics, WorkerProcess, produce

pytestmark = [pytest.mark.integration, pytest.mark.serial]

RULE = "payment.paid_not_updated"
THRESHOLD = timedelta(minutes=10)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def topics(broker: EmbeddedBroker) -> Topics:
    import asyncio

    t = Topics()
    asyncio.run(t.create(broker.bootstrap))
    return t


@pytest.fixture(scope="module")
def worker(
    broker: EmbeddedBroker, topics: Topics, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(broker.bootstrap, topics, tmp_path_factory.mktemp("worker"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
async def exceptions(broker: EmbeddedBroker, topics: Topics) -> AsyncIterator[Collector]:
    async with Collector(broker.bootstrap, topics.exceptions) as collector:
        yield collector


def of(records: list[Any], order_id: str, state: str | None = None) -> list[dict[str, Any]]:
    out = []
    for r in records:
        body = orjson.loads(r.value)
        if body["order_id"] == order_id and (state is None or body["state"] == state):
            out.append(body)
    return out


async def test_paid_not_updated_live_lifecycle_dlq_and_replay_agree(
    broker: EmbeddedBroker, topics: Topics, worker: WorkerProcess, exceptions: Collector
) -> None:
    now = datetime.now(UTC)
    deadline = now + timedelta(seconds=4)
    paid_at = deadline - THRESHOLD
    sent: list[dict[str, Any]] = []

    async def send(*events: dict[str, Any] | tuple[str, bytes]) -> None:
        await produce(broker.bootstrap, topics, list(events))
        sent.extend(e for e in events if isinstance(e, dict))

    async with Collector(broker.bootstrap, topics.dlq) as dlq:
        # bad input first: the events after it must still be processed
        bad_payment = paid("X", iso(paid_at), amount=199.0)  # type: ignore[arg-type]
        await send(
            ("orders", b"\x00not json at all"), ("payment-callbacks", orjson.dumps(bad_payment))
        )
        await send(
            created("O-late", iso(paid_at - timedelta(minutes=1))),
            paid("O-late", iso(paid_at)),
            created("O-ontime", iso(paid_at - timedelta(minutes=1))),
            paid("O-ontime", iso(paid_at)),
            status("O-ontime", "paid", iso(paid_at + timedelta(minutes=9))),
            created("O-fixed", iso(paid_at - timedelta(minutes=1))),
            paid("O-fixed", iso(paid_at)),
        )
        dead = await dlq.wait_for(lambda r: len(r) >= 2, 10, "two dead letters")
        reasons = sorted(dict(r.headers)["orderwatch.error.reason"].decode() for r in dead)
        assert reasons == ["invalid_json", "schema"]
        for record in dead:
            headers = dict(record.headers)
            assert headers["__connect.errors.topic"].decode() in (
                topics.name("orders"),
                topics.name("payment-callbacks"),
            )
            assert headers["__connect.errors.exception.message"]
            assert int(headers["__connect.errors.offset"]) >= 0

    await exceptions.wait_for(lambda r: of(r, "O-late", "raised"), 30, "O-late raised")
    arrived = time.time()
    [raised] = of(exceptions.records, "O-late", "raised")
    assert raised["rule_id"] == RULE
    assert datetime.fromisoformat(raised["event_time"]) == deadline.replace(
        microsecond=deadline.microsecond
    )
    assert arrived - deadline.timestamp() < 2.0, "raised within 2 s after the deadline"

    await exceptions.wait_for(lambda r: of(r, "O-fixed", "raised"), 10, "O-fixed raised")
    await send(status("O-fixed", "paid", iso(datetime.now(UTC))))
    await exceptions.wait_for(lambda r: of(r, "O-fixed", "resolved"), 10, "O-fixed resolved")
    [fixed_raised] = of(exceptions.records, "O-fixed", "raised")
    [fixed_resolved] = of(exceptions.records, "O-fixed", "resolved")
    assert fixed_raised["exception_id"] == fixed_resolved["exception_id"]

    assert of(exceptions.records, "O-ontime") == [], "status paid before the deadline: nothing"
    assert len(of(exceptions.records, "O-late")) == 1, "exactly one raise, no duplicate"

    # CloudEvents headers: ce_id is the stable id of the state change
    for record in exceptions.records:
        headers = dict(record.headers)
        body = orjson.loads(record.value)
        assert (
            headers["ce_id"].decode()
            == f"{body['exception_id']}:{body['state']}:{body['escalation_level']}:{body['seq']}"
        )
        assert record.key.decode() == body["subject"]

    # the offline replay of the same events gives the same exceptions
    out, err = io.BytesIO(), io.StringIO()
    replay(
        io.BytesIO(to_jsonl(sent)).readlines(),
        Engine(load_catalog()),
        out,
        err,
        until=datetime.now(UTC),
    )
    offline = {
        (e["exception_id"], e["rule_id"], e["subject"], e["state"])
        for e in map(orjson.loads, out.getvalue().splitlines())
    }
    live = {
        (e["exception_id"], e["rule_id"], e["subject"], e["state"]) for e in exceptions.values()
    }
    assert live == offline

    # the metrics saw it too: two dead letters by reason, the published exceptions by state
    invalid = sum(
        worker.metric("orderwatch_invalid_messages_total", reason=r)
        for r in ("invalid_json", "schema")
    )
    assert invalid == 2
    assert worker.metric("orderwatch_exceptions_published_total", rule_id=RULE, state="raised") >= 2


def _listening_sockets(pid: int) -> set[tuple[str, int]]:
    """Local (address, port) of every listening TCP socket the process holds (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:
                host_hex, port_hex = local.split(":")
                if len(host_hex) == 8:
                    host = ".".join(str(int(host_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
                else:
                    host = "::" if set(host_hex) == {"0"} else host_hex
                found.add((host, int(port_hex, 16)))
    return found


def test_worker_exposes_no_web_server_or_table_endpoint(worker: WorkerProcess) -> None:
    assert worker.proc is not None
    listening = _listening_sockets(worker.proc.pid)
    assert all(host == "127.0.0.1" for host, _ in listening), listening
    assert {port for _, port in listening} == {worker.metrics_port}, listening
    assert worker.get("/healthz")[0] == 200
    assert worker.get("/readyz")[0] == 200
    assert worker.get("/table/state/")[0] == 404, "no table endpoint"


def test_a_running_workers_scrape_passes_promtool(worker: WorkerProcess) -> None:
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (deploy/install-ci-tools.sh installs it)")
    status, body = worker.get("/metrics")
    assert status == 200
    assert b"orderwatch_events_consumed_total" in body
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == b"" and check.stderr.strip() == b"", "no lint findings"
