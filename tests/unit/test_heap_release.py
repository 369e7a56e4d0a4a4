"""When the worker releases memory (``orderwatch.heap.Releaser``): once a minute, and as soon as
a backlog's burst of events is over, not in the middle of one and not after a trickle."""

from __future__ import annotations

import itertools
from typing import Any

from orderwatch.heap import (
    BURST_EVENTS,
    IDLE_GAP,
    IDLE_RELEASES,
    RELEASE_EVERY,
    RELEASE_GAP,
    Releaser,
)

TICK = 0.5


def run(
    releaser: Releaser, t: float, n: int, rate: float, seconds: float
) -> tuple[float, int, list[float]]:
    """Ticks of the sweep timer at ``rate`` events/s; returns the time, count and releases."""
    fired = []
    for _ in range(int(seconds / TICK)):
        t += TICK
        n += int(rate * TICK)
        if releaser.due(n, t):
            fired.append(t)
    return t, n, fired


def test_a_backlog_is_released_within_seconds_of_its_end() -> None:
    releaser = Releaser(0.0)
    t, n, during = run(releaser, 0.0, 0, 2_000.0, 50.0)  # 100,000 events in 50 s
    assert during == []  # never in the middle of the burst (and the minute has not passed)
    t, n, after = run(releaser, t, n, 0.0, 10.0)
    # within 3 s of the rate dropping, then while idle every IDLE_GAP
    assert after[0] - t + 10.0 <= 3.0 and len(after) >= 3
    assert all(b - a >= IDLE_GAP - TICK for a, b in itertools.pairwise(after[1:]))


def test_live_traffic_after_a_backlog_ends_it_too() -> None:
    releaser = Releaser(0.0)
    t, n, _ = run(releaser, 0.0, 0, 3_000.0, 20.0)
    end = t
    t, n, after = run(releaser, t, n, 30.0, 10.0)  # the backlog read, live traffic goes on
    assert after and after[0] - end <= 3.0


def test_a_trickle_or_a_small_burst_waits_for_the_minute() -> None:
    releaser = Releaser(0.0)
    t, n, fired = run(releaser, 0.0, 0, 100.0, RELEASE_EVERY - 1)  # below BURST_EVENTS
    assert (RELEASE_EVERY - 1) * 100 < BURST_EVENTS
    t, n, quiet = run(releaser, t, n, 0.0, 0.5)
    assert fired == [] and quiet == []
    t, n, later = run(releaser, t, n, 0.0, 2.0)
    assert later == [RELEASE_EVERY]


def test_releases_after_bursts_are_spaced() -> None:
    releaser = Releaser(0.0)
    t, n, first = run(releaser, 0.0, 0, 50_000.0, 2.0)
    t, n, quiet = run(releaser, t, n, 0.0, 3.0)
    assert first == [] and quiet == []  # under RELEASE_GAP since the start
    t, n, later = run(releaser, t, n, 0.0, RELEASE_GAP)
    # at the gap, then the idle ones after it, then nothing until the minute
    assert later[0] <= RELEASE_GAP + TICK
    t, n, more = run(releaser, t, n, 0.0, IDLE_RELEASES * IDLE_GAP + 5.0)
    assert len(later) + len(more) == 1 + IDLE_RELEASES
    t, n, none = run(releaser, t, n, 0.0, RELEASE_GAP)
    assert none == []


def test_once_more_when_idle_after_a_burst() -> None:
    releaser = Releaser(0.0)
    t, n, _ = run(releaser, 0.0, 0, 2_000.0, 30.0)
    t, n, tail = run(releaser, t, n, 300.0, 5.0)  # the rate falls: the burst is over
    assert len(tail) == 1
    t, n, idle = run(releaser, t, n, 0.0, 5.0)  # then nothing: the drain's frees, released
    assert idle and idle[0] - t + 5.0 <= 3.0
    # a little work (the drain's tail) delays the next, which still comes when idle again
    t, n, busy = run(releaser, t, n, 300.0, 5.0)
    assert busy == []
    t, n, more = run(releaser, t, n, 0.0, 25.0)
    assert len(more) > 0 and len(idle) + len(more) == IDLE_RELEASES
    assert all(b - a >= IDLE_GAP - TICK for a, b in itertools.pairwise(more))
    t, n, none = run(releaser, t, n, 0.0, 10.0)  # and not again until the minute
    assert none == []


def test_a_backlog_longer_than_the_minute_is_released_at_its_end() -> None:
    releaser = Releaser(0.0)
    # 90 s of backlog: the minute's release comes in its middle, and what is left after it
    # (15,000 events) is fewer than a burst's worth
    t, n, during = run(releaser, 0.0, 0, 500.0, 90.0)
    assert during == [RELEASE_EVERY]
    assert (90.0 - RELEASE_EVERY) * 500 < BURST_EVENTS
    end = t
    t, n, after = run(releaser, t, n, 0.0, 10.0)
    # the burst counts from its start, not from the minute's release
    assert len(after) >= 2 and after[0] - end <= 3.0


def test_the_allocator_threshold_is_set_unless_the_operator_set_one(monkeypatch: Any) -> None:
    from orderwatch import heap

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "")
    assert heap.tune_allocator() is True  # glibc (this machine, the image)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    assert heap.tune_allocator() is False
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert heap.tune_allocator() is False
