"""The RocksDB state store against the real broker and real worker processes.

kill -9 on the store: the restart reads the changelog only after the offsets stored with the
state, and live still equals replay with no exception lost or raised under a new id. A standby
replica takes over the partitions of a worker killed with -9. A state directory that is not this
worker's (another app id, a shard it cannot read) is refused with a clear error or rebuilt from
the changelog, never read as state.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

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

OFFSET = "orderwatch_state_changelog_offset"
PARTITIONS = 4


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def start(bootstrap: str, topics: Topics, workdir: Path, **settings: str) -> WorkerProcess:
    return WorkerProcess(bootstrap, topics, workdir, clock="event", store="rocksdb", **settings)


def reading_starts(log: str) -> dict[int, int]:
    """The changelog offsets Faust's recovery started reading at, from the last such table."""
    tables = log.split("Reading Starts At - Active")
    assert len(tables) > 1, "no active recovery in the log"
    offsets: dict[int, int] = {}
    for line in tables[-1].splitlines()[3:]:
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 4 or not cells[2].isdigit():
            break
        offsets[int(cells[2])] = int(cells[3])
    return offsets


def shards_loaded(log: str) -> list[int]:
    """Per start, the timer index entries (shards) its engines read at once."""
    return [int(n) for n in re.findall(r"deadline index: (\d+) stored entries", log)]


def verified(worker: WorkerProcess) -> int:
    """Stored values the last start read in its background check (agents/store.py ``verify``),
    once it has checked every partition."""

    def lines() -> list[str]:
        return re.findall(
            r"state verified: (\d+) stored values", worker.log().rsplit("deadline index:", 1)[-1]
        )

    wait_until(lambda: len(lines()) >= PARTITIONS, 60, "the stored state verified")
    return sum(int(n) for n in lines())


def tabledir(workdir: Path) -> Path:
    return workdir / "data" / "v1" / "tables"


async def _fill_and_stop(
    broker: EmbeddedBroker, topics: Topics, workdir: Path, events: list, kill: bool
) -> dict[int, float]:
    """Run one worker over ``events`` until every partition's state offset is stored."""
    worker = start(broker.bootstrap, topics, workdir).start()
    try:
        await produce(broker.bootstrap, topics, list(events))
        wait_until(lambda: worker.metric(CONSUMED) >= len(events), 90, "the events read")
        wait_until(
            lambda: all(worker.metric(OFFSET, partition=str(p)) > 0 for p in range(PARTITIONS)),
            60,
            "a flush's changelog offset stored for every partition",
        )
        stored = {p: worker.metric(OFFSET, partition=str(p)) for p in range(PARTITIONS)}
    finally:
        worker.kill() if kill else worker.stop()
    return stored


async def test_kill_9_on_the_store_reads_only_the_changelog_tail_and_loses_nothing(
    broker: EmbeddedBroker,
    topics: Topics,
    workdir: Path,
    workers: list[WorkerProcess],
) -> None:
    events = scenario(seed=21)
    expected = replayed(events)
    half = len(events) // 2
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        stored = await _fill_and_stop(broker, topics, workdir, events[:half], kill=True)
        second = start(broker.bootstrap, topics, workdir).start()
        workers.append(second)
        starts = reading_starts(second.log())
        # every partition starts at (or after) the offset stored before the kill, not at 0
        for p in range(PARTITIONS):
            assert starts[p] >= stored[p] > 0, (p, starts, stored)
        assert shards_loaded(second.log())[-1] > 0, "the shards came from the local store"
        await produce(broker.bootstrap, topics, events[half:])
        await converge(out, expected, 120)
    assert {k[0] for k in live(out)} <= {k[0] for k in expected}, "no id replay would not give"


async def _standby_takeover(
    broker: EmbeddedBroker, topics: Topics, workdir: Path, workers: list[WorkerProcess], kill: bool
) -> tuple[WorkerProcess, list[dict[str, object]], set[tuple[str, str, str, str, int]], float]:
    """Two workers with a standby replica each; the second leaves (``kill``: with -9) after its
    state is written. Returns the survivor, the events, replay's exceptions and the seconds from
    the departure to the survivor being ready with every partition."""
    events = scenario(seed=22)
    expected = replayed(events)
    third = len(events) // 3
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    a = start(broker.bootstrap, topics, workdir / "a", standby_replicas="1").start()
    workers.append(a)
    b = start(broker.bootstrap, topics, workdir / "b", standby_replicas="1").start()
    workers.append(b)
    wait_until(lambda: a.ready() and b.ready(), 60, "both workers ready after the join")
    await produce(broker.bootstrap, topics, events[:third])
    wait_until(lambda: a.metric(CONSUMED) + b.metric(CONSUMED) >= third, 90, "the events read")

    def written_by_b() -> list[int]:
        return [p for p in range(PARTITIONS) if b.metric(OFFSET, partition=str(p)) > 0]

    wait_until(lambda: bool(written_by_b()), 60, "the state of the leaving worker written")
    taken = written_by_b()
    recoveries = a.log().count("Reading Starts At - Active")
    left = time.monotonic()
    b.kill() if kill else b.stop()
    # the survivor takes the partitions over (after the session timeout if killed)
    wait_until(
        lambda: a.log().count("Reading Starts At - Active") > recoveries and a.ready(),
        30,
        "the survivor ready with the taken partitions",
    )
    seconds = time.monotonic() - left
    starts = reading_starts(a.log())
    # the partitions it took over start from its standby copy's offset, not from the start
    assert all(starts.get(p, -1) > 0 for p in taken), (starts, taken)
    assert shards_loaded(a.log())[-1] > 0
    return a, events[third:], expected, seconds


@pytest.mark.serial
async def test_a_standby_takes_over_from_a_worker_that_leaves(
    broker: EmbeddedBroker, topics: Topics, workdir: Path, workers: list[WorkerProcess]
) -> None:
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        _, rest, expected, seconds = await _standby_takeover(
            broker, topics, workdir, workers, kill=False
        )
        assert seconds < 15, seconds
        await produce(broker.bootstrap, topics, rest)
        await converge(out, expected, 120)


@pytest.mark.serial
async def test_a_standby_takes_over_from_a_worker_killed_with_9_in_seconds(
    broker: EmbeddedBroker, topics: Topics, workdir: Path, workers: list[WorkerProcess]
) -> None:
    """Takeover only: live == replay after a kill -9 of one of two workers in event time does not
    hold on main either (the memory store misses as many; reported, not fixed here)."""
    survivor, rest, _, seconds = await _standby_takeover(
        broker, topics, workdir, workers, kill=True
    )
    # the session timeout (6 s) finds the dead member, then one rebalance and no replay
    assert seconds < 20, seconds
    consumed = survivor.metric(CONSUMED)
    await produce(broker.bootstrap, topics, rest)
    wait_until(lambda: survivor.metric(CONSUMED) >= consumed + len(rest), 90, "the rest read")


async def test_a_state_dir_of_another_app_is_refused_or_rebuilt(
    broker: EmbeddedBroker,
    topics: Topics,
    workdir: Path,
    workers: list[WorkerProcess],
) -> None:
    events = scenario(seed=23, orders=60)
    expected = replayed(events)
    half = len(events) // 2
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        await _fill_and_stop(broker, topics, workdir, events[:half], kill=False)
        marker = tabledir(workdir) / "orderwatch-state.json"
        real = json.loads(marker.read_text())
        marker.write_text(json.dumps({**real, "app_id": "someone-else"}))

        refused = start(broker.bootstrap, topics, workdir, state_mismatch="fail").launch()
        workers.append(refused)
        wait_until(lambda: not refused.alive(), 60, "the worker to refuse the directory")
        assert "is not this worker's (app_id is 'someone-else'" in refused.log()

        rebuilt = start(broker.bootstrap, topics, workdir).start()
        workers.append(rebuilt)
        log = rebuilt.log()
        assert "rebuilt from the changelog: app_id is 'someone-else'" in log
        caught = re.findall(r"changelog catch-up: (\d+) records", log)
        assert caught and int(caught[-1]) >= verified(rebuilt) > 0, "read from the start"
        assert shards_loaded(log)[-1] > 0, "the state came back from the changelog"
        assert json.loads(marker.read_text())["app_id"] == real["app_id"]
        await produce(broker.bootstrap, topics, events[half:])
        await converge(out, expected, 120)


async def test_a_shard_it_cannot_read_makes_it_rebuild_from_the_changelog(
    broker: EmbeddedBroker,
    topics: Topics,
    workdir: Path,
    workers: list[WorkerProcess],
) -> None:
    from rocksdict import Options, Rdict

    events = scenario(seed=24, orders=60)
    expected = replayed(events)
    half = len(events) // 2
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        await _fill_and_stop(broker, topics, workdir, events[:half], kill=False)
        db = Rdict(str(tabledir(workdir) / "state-1.db"), options=Options(raw_mode=True))
        key = next(k for k in db.keys() if k.startswith(b"o:"))  # noqa: SIM118 (an Rdict)
        db.put(key, json.dumps({"v": 99, "key": key.decode()}).encode())  # a future format
        db.close()

        broken = start(broker.bootstrap, topics, workdir).launch()
        workers.append(broken)
        wait_until(lambda: not broken.alive(), 60, "the worker to stop on the unreadable shard")
        assert broken.proc is not None and broken.proc.returncode == 3
        assert "has format version 99" in broken.log()

        rebuilt = start(broker.bootstrap, topics, workdir).start()
        workers.append(rebuilt)
        assert "rebuilt from the changelog: a rebuild was asked for" in rebuilt.log()
        await produce(broker.bootstrap, topics, events[half:])
        await converge(out, expected, 120)
