"""Dating and pacing: when an event is emitted and what time it says it happened.

Outside the demo every event carries its simulated time and nothing here changes it. In the demo
(``SimConfig.demo``) an event is dated by the emitter's clock at sending (``AGO`` seconds before
it), so that a timeout anomaly's deadline passes seconds after its trigger is emitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import orjson

from orderwatch.simulation.world import _DUE, AGO, Event, Step, _stamp


def backdated(life: Iterator[Step], lead: float) -> Iterator[Step]:
    """Emit a timeout anomaly's history up to its trigger at once, dated into the past.

    The trigger's deadline lands ``lead`` seconds (``SimConfig.demo_lead``) after it is emitted;
    what would have resolved it is left out, so the exception stays visible.
    """
    history: list[Step] = []
    due: float | None = None
    for step in life:
        history.append(step)
        due = step[1].pop(_DUE, None)
        if due is not None:
            break
    if due is None:  # not a timeout: nothing to shift
        yield from history
        return
    at = history[0][0]
    for t, ev in history:
        ev[AGO] = due - t - lead
        yield at, ev


def strip(life: Iterator[Step]) -> Iterator[Step]:
    """A lifecycle as simulated: the deadline marks only the demo reads are dropped."""
    for step in life:
        step[1].pop(_DUE, None)
        yield step


def _finish(event: Event, clock: Callable[[], float] | None) -> bytes:
    """Serialize one event; demo events get their ``occurred_at`` from the clock now."""
    ago = event.pop(AGO, None)
    if ago is not None and clock is not None:
        event["occurred_at"] = _stamp(clock() - ago)
    return orjson.dumps(event)


class _Pacer:
    """Holds emission to ``rate`` events a second (0: no limit), measured from the first."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.t0 = time.monotonic()
        self.n = 0

    def delay(self) -> float:
        self.n += 1
        if self.rate <= 0:
            return 0.0
        return max(0.0, self.t0 + self.n / self.rate - time.monotonic())
