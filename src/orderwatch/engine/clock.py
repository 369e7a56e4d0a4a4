"""The detector's clock (CONTRACT section 3) as a value, never a call to the wall clock.

Live, the shell passes wall-clock time. In replay, and in a worker set to event time, the clock is
the largest ``occurred_at`` read so far: it only moves with the input, so a replay of last month
fires last month's timeouts at the same points in the stream as they fired live.
"""

from __future__ import annotations

from datetime import datetime


class ReplayClock:
    """Largest event time read so far; ``finish(until)`` moves it to ``--until`` at the end."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now: float = float("-inf")

    def observe(self, occurred_at: datetime | float) -> float:
        # (an exact type test first: every event's time, and ``isinstance`` costs a call more)
        if type(occurred_at) is float or isinstance(occurred_at, float):
            ts = occurred_at
        else:
            ts = occurred_at.timestamp()
        if ts > self.now:
            self.now = ts
        return self.now

    def finish(self, until: datetime | None) -> float:
        if until is not None and until.timestamp() > self.now:
            self.now = until.timestamp()
        return self.now
