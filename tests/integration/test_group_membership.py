"""A worker restarted after kill -9 on its state directory does not wait for its dead incarnation.

The dead incarnation's member stays in the group until its session expires; the restarted worker
ends it with a LeaveGroup before joining (``agents/membership.py``). The first test runs with a
50 s session, so that the two outcomes are far apart whatever the machine's load: a restart that
waited for the dead member could not be ready before the broker evicts it, 50 s after its last
heartbeat (at least ~46 s after the kill); one that ended it is ready after its start and
Tansu's JoinGroup hold (half the session: 25 s), ~30 s after the kill. Ready within 40 s tells
them apart with ~6 s of margin either side; the LeaveGroup's answer shows the mechanism: the
coordinator still had the dead member and removed it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orderwatch.agents.membership import LOCK_FILE, MEMBER_FILE
from orderwatch.broker import EmbeddedBroker
from tests.integration.harness import Topics, WorkerProcess, wait_until

pytestmark = pytest.mark.integration

SESSION = "50"
#: well under the session: the restart cannot be ready this soon while the dead member holds on
WITHIN_SESSION = 40.0


def tabledir(workdir: Path) -> Path:
    return workdir / "data" / "v1" / "tables"


def start(bootstrap: str, topics: Topics, workdir: Path, **settings: str) -> WorkerProcess:
    return WorkerProcess(bootstrap, topics, workdir, store="rocksdb", clock="event", **settings)


def recorded(workdir: Path) -> str | None:
    try:
        member = json.loads((tabledir(workdir) / MEMBER_FILE).read_text())["member_id"]
    except (OSError, ValueError, KeyError):
        return None
    return str(member)


async def test_a_restart_after_kill_9_ends_the_dead_member_instead_of_waiting_for_its_session(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    first = start(broker.bootstrap, topics, tmp_path, session_timeout=SESSION).start(90)
    workers.append(first)
    wait_until(lambda: recorded(tmp_path) is not None, 30, "the member id recorded")
    dead = recorded(tmp_path)
    first.kill()
    killed = time.monotonic()

    second = start(broker.bootstrap, topics, tmp_path, session_timeout=SESSION)
    workers.append(second)
    second.launch()
    wait_until(lambda: second.ready() or not second.alive(), 90, "the restarted worker's /readyz")
    ready_after = time.monotonic() - killed
    log = second.log()
    assert second.alive(), log[-3000:]
    # the mechanism: the coordinator still had the dead member and removed it on request
    assert f"ended the previous incarnation's group membership {dead} (left)" in log, log[-3000:]
    assert ready_after < WITHIN_SESSION, (ready_after, log[-3000:])
    # the new incarnation is recorded for the next restart
    wait_until(lambda: recorded(tmp_path) not in (None, dead), 30, "the new member id recorded")


async def test_a_worker_on_a_live_workers_directory_leaves_its_membership_alone(
    broker: EmbeddedBroker, topics: Topics, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """Two workers must never share a state directory; if a second is pointed at a live one's
    directory anyway, it cannot end the live worker's membership (the directory's lock)."""
    first = start(broker.bootstrap, topics, tmp_path).start()
    workers.append(first)
    wait_until(lambda: recorded(tmp_path) is not None, 30, "the member id recorded")
    live_member = recorded(tmp_path)
    assert (tabledir(tmp_path) / LOCK_FILE).read_text().strip() == str(first.proc.pid)  # type: ignore[union-attr]

    intruder = start(broker.bootstrap, topics, tmp_path)
    workers.append(intruder)
    intruder.launch()
    wait_until(
        lambda: "is locked by another live worker" in intruder.log() or not intruder.alive(),
        60,
        "the second worker to find the directory locked",
    )
    assert "ended the previous incarnation" not in intruder.log()
    assert recorded(tmp_path) == live_member
    intruder.kill()
    assert first.alive()
    wait_until(first.ready, 60, "the first worker ready again")
