"""Dating and pacing: when an event is emitted and what time it says it happened.

Outside the demo every event carries its simulated time and nothing here changes it. In the demo
(``SimConfig.demo``) every event is dated by the emitter's clock at sending: a healthy one at that
moment, a timeout anomaly's history ``AGO`` seconds before it, so that its deadline passes seconds
after its trigger is emitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime

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
    """Serialize one event; demo events (``clock`` given) get their ``occurred_at`` from it now.

    Every demo event, not only a backdated anomaly's: a healthy one is dated at sending. Its
    simulated time runs ahead of the clock (a run starts now and sends a simulated day in about
    a minute), and dated so it put the worker's event-time clock up to days ahead of the wall
    clock: the console showed negative ages, and the backdated anomalies arrived behind a clock
    that had already passed their deadlines and closed their windows. Dated at sending, a
    healthy journey runs faster than simulated, which keeps it inside every "too late" threshold;
    never after the clock either (``max(ago, 0)``), so nothing the demo sends is from the future.
    The other times in the event move with it (``_move``).
    """
    ago = event.pop(AGO, 0.0)
    if clock is not None:
        at = clock() - max(ago, 0.0)
        _move(event, at - _seconds(event["occurred_at"]))
    return orjson.dumps(event)


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _move(event: Event, by: float) -> None:
    """Move every time an event carries by ``by`` seconds, each in its own style (``+08:00`` or
    ``Z``): an account keeps its age at the order, a promise its days after it."""
    event["occurred_at"] = _stamp(_seconds(event["occurred_at"]) + by)
    customer = event.get("customer")
    if customer is not None:
        customer["account_created_at"] = _stamp(_seconds(customer["account_created_at"]) + by)
    promise = event.get("promised_delivery_by")
    if promise is not None:
        event["promised_delivery_by"] = _stamp(_seconds(promise) + by, promise.endswith("+08:00"))


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
