"""The event-time watermark's idleness: what lets the clock jump to the newest time read.

A router's clock may move past an input partition it has read to its end only once that input is
idle: nothing read from it for ``CAUGHT_UP_FOR`` seconds, measured in fetch responses when the
consumer tells when it had them. These tests drive the router as the worker's loop does (a look
before each batch, the envelope's stamp after it, a report each tick) on a hand-moved wall clock.
"""

from __future__ import annotations

from typing import Any

import orjson

from orderwatch.agents.shell import CAUGHT_UP_FOR, INF, Shell
from tests.agents.test_shell import Recorder, make_shell, occurred
from tests.factories import created, paid, plus, status

ORDERS, PAYMENTS = ("orders", 0), ("payment-callbacks", 0)
INPUTS = [ORDERS, PAYMENTS]
TICK = 0.2


class Router:
    """One shell fed input partitions as a live producer writes them, on a wall clock moved by
    hand; ``fetched`` is when the consumer last had a fetch response (None: it does not tell)."""

    def __init__(self, fetched: bool = False) -> None:
        self.rec = Recorder()
        self.wall = 1_000_000.0
        self.shell: Shell = make_shell(self.rec, wall=lambda: self.wall)
        self.written: dict[tuple[str, int], list[dict[str, Any]]] = {tp: [] for tp in INPUTS}
        self.read_to = dict.fromkeys(INPUTS, 0)
        self.fetch_at: float | None = self.wall if fetched else None
        #: the high watermarks of the last fetch response (a starved consumer's stay old)
        self.highs = dict.fromkeys(INPUTS, 0)

    def fetch(self) -> None:
        """A fetch response arrives: the high watermarks are the broker's now."""
        self.highs = {tp: len(events) for tp, events in self.written.items()}
        if self.fetch_at is not None:
            self.fetch_at = self.wall

    def look(self) -> None:
        if self.fetch_at is None:  # as the worker calls it when its consumer does not tell
            self.shell.look(INPUTS, self.high, lambda t, p: 0)
        else:
            self.shell.look(INPUTS, self.high, lambda t, p: 0, self.fetched)

    def high(self, topic: str, partition: int) -> int:
        return self.highs[(topic, partition)]

    @property
    def fetched(self) -> Any:
        return None if self.fetch_at is None else lambda t, p: self.fetch_at

    def batch(self) -> None:
        """Route everything fetched and not read yet (one batch), as the router agent does."""
        start = len(self.rec.shard)
        self.look()
        for tp in INPUTS:
            for offset in range(self.read_to[tp], self.highs[tp]):
                event = self.written[tp][offset]
                self.shell.route(orjson.dumps(event), tp[0], tp[1], offset)
            self.read_to[tp] = self.highs[tp]
        self.shell.flush()
        self.shell.process(self.rec.shard[start:])

    def tick(self) -> None:
        """The sweep timer: a watermark report to every shard partition, then due deadlines."""
        start = len(self.rec.shard)
        if self.fetch_at is None:
            self.shell.send_watermarks(INPUTS, self.high, INPUTS, lambda t, p: 0)
        else:
            self.shell.send_watermarks(INPUTS, self.high, INPUTS, lambda t, p: 0, self.fetched)
        self.shell.process(self.rec.shard[start:])
        self.shell.sweep()

    def step(self) -> None:
        self.wall += TICK
        self.fetch()
        self.batch()
        self.tick()

    def raised(self, rule: str) -> list[str]:
        return [e["order_id"] for e in self.rec.exceptions if e["rule_id"] == rule]


def test_a_router_keeping_up_with_a_live_stream_holds_the_clock_at_its_slowest_input() -> None:
    """The live-equals-replay flake: each batch was read to its end before its stamp, so the
    router looked caught up all along and moved the clock to the newest time read on any input;
    a producer had written the payments partition further than the orders one, and O1's 10:00
    payment timed out (paid_not_updated, 10 minutes) before its 10:05 status was readable."""
    router = Router()
    router.written[PAYMENTS] += [paid("O1", "10:00"), paid("O2", "10:30", payment_id="P2")]
    router.written[ORDERS] += [created("O1", "09:58"), created("O2", "09:59")]
    router.step()
    # the orders stream flows for five seconds, one event per tick, 20 s of event time apart
    flowing = int(5 / TICK)
    for i in range(flowing):
        at = plus("10:00", seconds=20 * i)
        if at == plus("10:05"):
            router.written[ORDERS].append(status("O1", "paid", at))
        else:
            router.written[ORDERS].append(created(f"F{i}", at))
        router.step()
        assert router.shell.watermark()[0] < INF, f"records flowing at tick {i}: not idle"
    assert router.raised("payment.paid_not_updated") == [], "O1's status came in time"
    assert router.shell.watermark()[0] == occurred(router.written[ORDERS][-1])
    # the input stops: after CAUGHT_UP_FOR with nothing read the clock moves to the newest time
    for _ in range(int(CAUGHT_UP_FOR / TICK) + 1):
        router.step()
    assert router.shell.watermark() == (INF, occurred(paid("O2", "10:30")))
    assert max(router.shell.event_clock.values()) == occurred(paid("O2", "10:30"))
    assert router.raised("payment.paid_not_updated") == []


def test_a_router_starved_of_fetch_responses_does_not_take_its_inputs_for_idle() -> None:
    """Its loop blocked for seconds (CPU starvation), a router woke with the high watermarks of
    before: by wall time its inputs had been read to their end for long, and the clock jumped
    past what had reached the broker meanwhile. Idle time counts in fetch responses."""
    router = Router(fetched=True)
    router.written[PAYMENTS] += [paid("O1", "10:00"), paid("O2", "10:30", payment_id="P2")]
    router.written[ORDERS] += [created("O1", "09:58"), created("O2", "09:59")]
    router.step()
    # O1's status reaches the broker, but the router gets no fetch response for three seconds
    router.written[ORDERS].append(status("O1", "paid", "10:05"))
    for _ in range(int(3 / TICK)):
        router.wall += TICK
        router.batch()  # what it had fetched: nothing new
        router.tick()
        assert router.shell.watermark()[0] < INF, "no fetch response: idleness unproven"
    assert router.raised("payment.paid_not_updated") == []
    router.step()  # the fetch response: O1's status is read, then it is idle again
    assert router.raised("payment.paid_not_updated") == []
    for _ in range(int(CAUGHT_UP_FOR / TICK) + 1):
        router.step()
    assert router.shell.watermark()[0] == INF, "idle for a second of fetch responses"
    assert router.raised("payment.paid_not_updated") == []


def test_without_fetch_times_idleness_is_wall_time_with_nothing_read() -> None:
    """A consumer that does not tell when it fetched: a second of wall time with nothing read,
    as before; one record read starts the second again."""
    router = Router()
    router.written[ORDERS].append(created("O1", "09:58"))
    router.step()
    router.wall += CAUGHT_UP_FOR - TICK
    router.tick()
    assert router.shell.watermark()[0] < INF
    router.written[ORDERS].append(created("O2", "09:59"))
    router.step()  # a record read just before the second was up
    router.wall += CAUGHT_UP_FOR - TICK
    router.tick()
    assert router.shell.watermark()[0] < INF, "the record started the second again"
    router.wall += TICK
    router.tick()
    assert router.shell.watermark() == (INF, occurred(created("O2", "09:59")))


def test_a_quiet_input_holds_the_clock_only_until_it_is_idle() -> None:
    """Flink's withIdleness: a partition read to its end with nothing read for a second holds
    nothing back, though another input flows; before that it holds the clock at its last time."""
    router = Router()
    router.written[PAYMENTS].append(paid("O1", "09:00"))
    router.written[ORDERS].append(created("O1", "08:58"))
    router.step()
    for i in range(int(3 / TICK)):
        router.written[ORDERS].append(created(f"F{i}", plus("10:00", seconds=20 * i)))
        router.step()
        if i * TICK < CAUGHT_UP_FOR - TICK:
            assert router.shell.watermark()[0] == occurred(paid("O1", "09:00")), i
    assert router.shell.watermark()[0] == occurred(router.written[ORDERS][-1]), "flowing"
