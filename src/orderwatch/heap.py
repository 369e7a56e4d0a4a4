"""Tune CPython's cyclic garbage collector for a process that holds the engine's state.

The engine keeps hundreds of thousands of small objects (shards, open exceptions, deadlines) and
a busy worker allocates a few per event; almost none of them are ever in a reference cycle, so
reference counting frees them. With CPython's default thresholds (700, 10, 10) the collector
still ran a young collection every 700 allocations and a full one every hundred of those, each
walking the whole heap: measured in the worker on the pipeline bench, 2.6 s of a 15 s run
(1,420 young, 129 middle and 12 full collections) and about 40 % of its throughput. Raising the
thresholds keeps the collector for what it is for (cycles) at a fraction of the cost; memory is
unchanged because nothing the engine drops waits for it.
"""

from __future__ import annotations

import gc
import logging
import os

log = logging.getLogger("orderwatch.heap")

#: Allocations between young collections, and how many collections of each generation before
#: the next older one is collected.
THRESHOLDS = (50_000, 20, 100)


def tune_collector() -> None:
    """Apply ``THRESHOLDS`` (the worker and ``orderwatch replay`` call this on start)."""
    gc.set_threshold(*THRESHOLDS)


#: glibc's ``mallopt`` parameter number of the mmap threshold (malloc.h ``M_MMAP_THRESHOLD``).
M_MMAP_THRESHOLD = -3
#: Allocations of at least this many bytes get a mapping of their own, unmapped when freed.
MMAP_THRESHOLD = 128 * 1024


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD`` (its initial value) for the worker;
    returns whether it was set.

    glibc raises the threshold to the size of each mapped block freed, up to 32 MiB: after a
    backlog's first large buffers (fetch responses, produce batches, the table of a big dict)
    are freed, every later one of up to that size comes from the heap instead, interleaved with
    what lives on, where ``malloc_trim`` returns only the pages nothing live shares. Fixed, large
    blocks keep their own mappings and leave with their last reference. Measured on the
    10,000-order quick check (docs/benchmarks.md, n-rss2). A threshold the operator set
    (``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``) is left alone; not glibc: nothing to do.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


#: Seconds between two ``release_memory`` calls in the worker.
RELEASE_EVERY = 60.0


def release_memory() -> int:
    """A full collection, then glibc's ``malloc_trim``: what a long-running worker frees goes
    back to the operating system. Returns the objects the collection found unreachable.

    With ``THRESHOLDS`` a full collection comes only every 100 M allocations, about a busy
    day: cyclic garbage from the Kafka client and asyncio (futures, tasks, exceptions with
    their tracebacks) waited that long, and with it the RSS. Freed memory of larger objects (the
    fetch buffers of a catch-up) stays in glibc's heap until trimmed. Called once a minute from
    the worker's timer, it costs a few milliseconds with the state in RocksDB (the shards in
    memory are the bounded cache; the deadline index is tuples the collector stops tracking).
    """
    found = gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
    return found


#: Events processed since the last release that make a burst worth releasing after as soon as it
#: ends: a backlog's worth of decoded events, parked models and fetch buffers went through the
#: allocator, and what it keeps of them waits for the next release otherwise.
BURST_EVENTS = 20_000
#: Wall seconds over which the processing rate is judged (a sweep tick is 0.5 s: a tick alone
#: is too noisy, a commit or a collection can stall one).
RATE_WINDOW = 2.0
#: A burst is over when the rate over ``RATE_WINDOW`` falls below this share of its fastest.
SETTLED_SHARE = 0.25
#: Shortest wall time between two releases at the end of bursts.
RELEASE_GAP = 10.0
#: Releases while the worker stays idle after a burst, and the wall seconds between them: the
#: tail of a backlog (the last shard messages committed, the producer's batches sent) frees
#: what it held after the first idle release (the quick check sampled 217 MiB 13 s after it,
#: 176 MiB at the next minute's release), so a few more follow while nothing is processed.
IDLE_RELEASES = 6
IDLE_GAP = 3.0


class Releaser:
    """When the worker calls ``release_memory``: once every ``RELEASE_EVERY``, as soon as a
    burst of at least ``BURST_EVENTS`` (a backlog read after a restart or an outage, a
    backfill) is over, judged by the processing rate falling to a quarter of the burst's, and
    when nothing at all was processed over ``RATE_WINDOW`` after such a burst, and again every
    ``IDLE_GAP`` while that lasts, ``IDLE_RELEASES`` times at most (the last parked events and
    deadlines of a backlog are applied after its rate has fallen, and the last of its state
    and output written after that, and free what they held then).

    A backlog leaves the most freed memory in the allocator (100-180 MiB after the 10,000-order
    quick check); released once a minute, the worker kept it for up to a minute after catching
    up. Pure bookkeeping: the caller passes its processed count and a monotonic time."""

    def __init__(self, now: float, every: float = RELEASE_EVERY) -> None:
        self.every = every
        #: the last release of any kind (the minute counts from it)
        self.last = now
        #: the last release at the end of a burst or idle after one (``RELEASE_GAP`` counts
        #: from it). The minute's release does not end a burst: a backlog read for longer than
        #: a minute had one in its middle, which restarted the burst's count, and what was left
        #: of the backlog (under ``BURST_EVENTS``) was never released at its end (the 10,000-order
        #: quick check sampled "after the day" with no release since the minute's: 283 MiB,
        #: 176 MiB a minute later)
        self.last_burst = now
        self.base: int | None = None
        #: (time, processed) of the ticks within ``RATE_WINDOW``
        self.window: list[tuple[float, int]] = []
        self.peak = 0.0
        #: a burst ended and was released: releases left while the worker is idle
        self.follow = 0

    def due(self, processed: int, now: float) -> bool:
        """Whether to release now (and if so, the next burst counts from here)."""
        if self.base is None:
            self.base = processed
        window = self.window
        window.append((now, processed))
        while len(window) > 2 and now - window[1][0] >= RATE_WINDOW:
            del window[0]
        start, first = window[0]
        judged = now - start >= RATE_WINDOW / 2
        rate = (processed - first) / (now - start) if judged else 0.0
        if judged:
            self.peak = max(self.peak, rate)
        burst_over = (
            processed - self.base >= BURST_EVENTS
            and rate < SETTLED_SHARE * self.peak
            and now - self.last_burst >= RELEASE_GAP
        )
        idle = (
            self.follow > 0
            and judged
            and processed == first
            and now - self.last_burst >= (RATE_WINDOW if self.follow == IDLE_RELEASES else IDLE_GAP)
        )
        if burst_over:
            log.info("a burst of %d events is over: memory released", processed - self.base)
        elif idle:
            log.info("idle after a burst: memory released")
        if burst_over or idle:
            self.follow = IDLE_RELEASES if burst_over else self.follow - 1
            self.last = self.last_burst = now
            self.base = processed
            self.peak = 0.0
            return True
        if now - self.last >= self.every:
            self.last = now
            return True
        return False
