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

log = logging.getLogger("orderwatch.heap")

#: Allocations between young collections, and how many collections of each generation before
#: the next older one is collected.
THRESHOLDS = (50_000, 20, 100)


def tune_collector() -> None:
    """Apply ``THRESHOLDS`` (the worker and ``orderwatch replay`` call this on start)."""
    gc.set_threshold(*THRESHOLDS)


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


class Releaser:
    """When the worker calls ``release_memory``: once every ``RELEASE_EVERY``, as soon as a
    burst of at least ``BURST_EVENTS`` (a backlog read after a restart or an outage, a
    backfill) is over, judged by the processing rate falling to a quarter of the burst's, and
    once more when nothing at all was processed over ``RATE_WINDOW`` after such a burst (the
    last parked events and deadlines of a backlog are applied after its rate has fallen, and
    free what they held then).

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
        #: a burst ended and was released: release again once the worker is idle
        self.follow = False

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
            self.follow and judged and processed == first and now - self.last_burst >= RATE_WINDOW
        )
        if burst_over:
            log.info("a burst of %d events is over: memory released", processed - self.base)
        elif idle:
            log.info("idle after a burst: memory released")
        if burst_over or idle:
            self.follow = burst_over
            self.last = self.last_burst = now
            self.base = processed
            self.peak = 0.0
            return True
        if now - self.last >= self.every:
            self.last = now
            return True
        return False
