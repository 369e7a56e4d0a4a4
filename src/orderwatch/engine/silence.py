"""``system.source_silent``: one exception for a silent stream instead of thousands of timeouts.

When a stream (or one ``source`` system within it) stops arriving while the other streams flow,
every order waiting on it would soon time out. This monitor notices the silence first, raises one
exception for it, and tells the engines which timeout rules to hold until the stream is back.

Silence is judged on *arrival* time (the wall clock when a message was read), which only the live
worker has; ``orderwatch replay`` never uses this module, so it cannot change replay output.
"""

from __future__ import annotations

from orderwatch.engine.catalog import Rule, format_duration
from orderwatch.engine.lifecycle import Lifecycle, iso
from orderwatch.engine.state import Shard
from orderwatch.events.exception import ExceptionEvent

RULE = "system.source_silent"

#: Which timeout rules wait on events from which stream (the resolving or the deciding events).
DEPENDS_ON: dict[str, frozenset[str]] = {
    "orders": frozenset(
        {
            "payment.paid_not_updated",
            "payment.orphan",
            "logistics.orphan",
            "logistics.not_shipped",
            "logistics.delivery_delayed",
            "order.shipped_unpaid",
        }
    ),
    "payments": frozenset({"payment.failed_unpaid", "order.shipped_unpaid"}),
    "logistics": frozenset(
        {"logistics.not_shipped", "logistics.tracking_stale", "logistics.delivery_delayed"}
    ),
    "inventory": frozenset({"inventory.sync_drift"}),
}


class SilenceMonitor:
    """Tracks the last arrival per stream and per (stream, source); pure, clock passed in.

    ``streams`` maps topic name -> stream name (``orders``, ``payments``, ``logistics``,
    ``inventory``); topics not in it (the blacklist, which is quiet by nature) are not watched.
    ``release_after`` keeps holding for a moment after a stream returns, so its backlog is read
    before the held deadlines are judged.
    """

    def __init__(
        self, rules: dict[str, Rule], streams: dict[str, str], release_after: float = 5.0
    ) -> None:
        self.rules = rules
        self.streams = streams
        self.release_after = release_after
        self.last_stream: dict[str, float] = {}
        self.last_source: dict[tuple[str, str], float] = {}
        self.returned_at: dict[str, float] = {}
        self.shard = Shard("silence")
        self.life = Lifecycle(rules, self._schedule, self._unschedule)

    @staticmethod
    def _schedule(shard: Shard, name: str, due: float) -> None:
        """Silence exceptions do not escalate on a schedule of their own: the rule resolves
        when traffic returns, and a long outage is already paged by the SRE alert."""

    @staticmethod
    def _unschedule(shard: Shard, name: str) -> None:
        return None

    @property
    def threshold(self) -> float:
        return float(self.rules[RULE].params.silence)

    def observe(self, topic: str, source: str, arrival: float) -> None:
        stream = self.streams.get(topic)
        if stream is None:
            return
        previous = self.last_stream.get(stream)
        if previous is not None and arrival - previous > self.threshold:
            self.returned_at[stream] = arrival
        self.last_stream[stream] = arrival
        self.last_source[(stream, source)] = arrival

    def check(self, now: float) -> tuple[list[ExceptionEvent], frozenset[str]]:
        """Raise/resolve silence exceptions; return them and the timeout rules to hold."""
        rule = self.rules.get(RULE)
        if rule is None or not rule.enabled:
            return [], frozenset()
        limit = self.threshold
        flowing = [s for s, t in self.last_stream.items() if now - t <= limit]
        held: set[str] = set()
        for stream, last in self.last_stream.items():
            silent = now - last > limit and any(s != stream for s in flowing)
            self._judge(stream, last, silent, now)
            returned = self.returned_at.get(stream)
            if silent or (returned is not None and now - returned < self.release_after):
                held |= DEPENDS_ON.get(stream, frozenset())
        for (stream, source), last in self.last_source.items():
            stream_last = self.last_stream[stream]
            silent = now - last > limit and now - stream_last <= limit
            self._judge(f"{stream}/{source}", last, silent, now)
        out, self.life.out = self.life.out, []
        return out, frozenset(held)

    def status(self) -> dict[str, bool]:
        """Every watched stream and stream/source subject, and whether it is silent now."""
        subjects = list(self.last_stream) + [f"{s}/{src}" for s, src in self.last_source]
        return {s: self.life.is_open(self.shard, RULE, s) for s in subjects}

    def _judge(self, subject: str, last: float, silent: bool, now: float) -> None:
        if silent:
            self.life.raise_(
                self.shard,
                RULE,
                subject,
                iso(last),
                last + self.threshold,
                now,
                [],
                {"last_seen_at": iso(last), "silence": format_duration(self.threshold)},
            )
        elif self.life.is_open(self.shard, RULE, subject):
            self.life.resolve(self.shard, RULE, subject, now, [], {"traffic_returned_at": iso(now)})
            self.shard.done = self.shard.closed = None
