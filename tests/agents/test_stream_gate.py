"""``StreamGate`` (``agents/faust_internals.py``): no stream record delivered while a rebalance is
under way, and whatever the fetch loop did not hand to a stream fetched again (no Kafka needed:
the gate wraps three methods of Faust's consumer, stood in for here).

The loss it prevents (the join/leave rebalance test): records delivered during Faust's final
seek were cleared from the router's queue, the loop took the jump to the next record for a gap
and dropped the re-fetched ones as already read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from faust.types import TP

from orderwatch.agents.faust_internals import PRESSURE_POLL, InputPause, StreamGate

CHANGELOG = "app-state-changelog"
ORDERS = TP("orders", 0)
PAYMENTS = TP("payments", 1)
STATE = TP(CHANGELOG, 0)


class Tables:
    changelog_topics = frozenset({CHANGELOG})


class App:
    def __init__(self) -> None:
        self.rebalancing = False
        self.rebalancing_count = 0
        self.tables = Tables()

    def start(self) -> None:
        """``App.on_rebalance_start``, as the consumer's rebalance listener calls it."""
        self.rebalancing = True
        self.rebalancing_count += 1


class Consumer:
    """What the gate wraps and reads of Faust's consumer."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.flow_active = True
        self._read_offset: dict[TP, int | None] = {}
        self._committed_offset: dict[TP, int | None] = {ORDERS: 40}
        self.assigned = {ORDERS, PAYMENTS, STATE}
        self.asked: list[set[TP] | None] = []
        self.timeouts: list[float] = []
        self._buffered_partitions: set[TP] = set()
        self.answer: dict[TP, list[int]] = {}
        self.during_fetch: Any = None
        self.batch: list[tuple[TP, int]] = []
        self.during_delivery: Any = None
        self.seeks: list[str] = []
        self.seeked: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:  # noqa: ASYNC109
        self.asked.append(active_partitions)
        self.timeouts.append(timeout)
        if self.during_fetch is not None:
            await self.during_fetch()
        return dict(self.answer)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, int]]:  # noqa: ASYNC109
        for tp, offset in self.batch:
            yield tp, offset

    async def perform_seek(self) -> None:
        self.seeks.append("seek")
        self._read_offset.update({tp: self._committed_offset.get(tp) for tp in self.assigned})

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeked.append((tp, offset))


def gated() -> tuple[App, Consumer, StreamGate]:
    app = App()
    consumer = Consumer(app)
    gate = StreamGate(app, consumer)
    gate.install()
    return app, consumer, gate


async def test_while_rebalancing_only_changelog_partitions_are_fetched() -> None:
    app, consumer, _ = gated()
    app.start()
    await consumer._getmany(active_partitions={ORDERS, STATE}, timeout=0.01)
    assert consumer.asked == [{STATE}]
    # stream partitions alone: no call at all (aiokafka takes an empty set for "all")
    assert await consumer._getmany(active_partitions={ORDERS}, timeout=0.01) == {}
    assert consumer.asked == [{STATE}]
    app.rebalancing = False  # App.on_rebalance_end
    await consumer._getmany(active_partitions={ORDERS, STATE}, timeout=0.01)
    assert consumer.asked[-1] == {ORDERS, STATE}


async def test_stream_records_of_a_fetch_a_rebalance_overtook_are_fetched_again() -> None:
    app, consumer, _ = gated()
    consumer.answer = {ORDERS: [41, 42], STATE: [7]}
    consumer.during_fetch = _async(app.start)
    records = await consumer._getmany(active_partitions={ORDERS, STATE}, timeout=0.01)
    assert records == {STATE: [7]}, "stream records dropped, the changelog's delivered"
    # the rebalance ends without a seek (say its recovery was cut short): the gate stays shut
    # and the fetch loop seeks itself before it asks for stream partitions again
    app.rebalancing = False
    consumer.during_fetch = None
    await consumer._getmany(active_partitions={ORDERS, STATE}, timeout=0.01)
    assert consumer.seeks == ["seek"]
    assert consumer.asked[-1] == {ORDERS, STATE}


async def test_the_gate_stays_shut_until_a_seek_started_after_the_drop() -> None:
    app, consumer, gate = gated()
    consumer.answer = {ORDERS: [41]}
    app.start()
    consumer.during_fetch = gate.perform_seek  # a seek that began before the records came back
    await consumer._getmany(active_partitions={ORDERS, STATE}, timeout=0.01)
    consumer.during_fetch = None
    app.rebalancing = False
    assert gate.closed(), "that seek may have run before the dropped records were fetched"
    await consumer._getmany(active_partitions={ORDERS, STATE}, timeout=0.01)
    assert consumer.seeks == ["seek", "seek"] and not gate.closed()


async def test_records_that_come_back_while_the_flow_is_stopped_are_fetched_again() -> None:
    """Faust drops them itself and seeks: the gate counts them, so the seek covers them."""
    _, consumer, gate = gated()
    consumer.answer = {ORDERS: [41]}
    consumer.flow_active = False
    assert await consumer._getmany(active_partitions={ORDERS}, timeout=0.01) == {}
    assert gate.closed()
    await consumer.perform_seek()
    assert not gate.closed()


async def test_a_seek_rewinds_a_stream_partition_without_a_committed_offset_to_its_start() -> None:
    """aiokafka's ``seek_to_committed`` leaves such a partition where the fetcher stood."""
    _, consumer, _ = gated()
    await consumer.perform_seek()
    assert consumer.seeked == [(PAYMENTS, 0)], "not ORDERS (committed), not the changelog"


async def test_a_seek_during_a_delivery_keeps_its_read_offset() -> None:
    _, consumer, gate = gated()
    consumer.batch = [(ORDERS, 50), (STATE, 8), (ORDERS, 51), (PAYMENTS, 3)]
    delivered = []
    async for tp, offset in consumer.getmany(timeout=0.01):  # Faust's ``_drain_messages``
        delivered.append((tp, offset))
        if offset == 50:
            await gate.perform_seek()  # the seek completes while 50 is being delivered
        consumer._read_offset[tp] = offset  # the loop's read offset, once it is delivered
    assert consumer._read_offset[ORDERS] == 40, "the seek's offset, not 50"
    assert delivered == [(ORDERS, 50), (STATE, 8)], "the rest of the streams' records skipped"


def _async(fun: Any) -> Any:
    async def call() -> None:
        fun()

    return call


async def test_paused_input_partitions_are_left_out_of_the_fetch_in_a_set_of_its_own() -> None:
    """``InputPause`` (watermark alignment): aiokafka is not asked for a paused partition, and
    Faust's own set, which its fetch loop checks every handed-over record against, is untouched
    (taking a partition out of it mid-batch made the loop skip records aiokafka had already
    handed over: lost)."""
    _, consumer, gate = gated()
    gate.paused = {ORDERS}
    faust_set = {ORDERS, PAYMENTS, STATE}
    await consumer._getmany(active_partitions=faust_set, timeout=0.01)
    assert consumer.asked == [{PAYMENTS, STATE}]
    assert faust_set == {ORDERS, PAYMENTS, STATE}
    # every stream partition paused: no call (aiokafka takes an empty set for "all")
    assert await consumer._getmany(active_partitions={ORDERS}, timeout=0.01) == {}
    assert len(consumer.asked) == 1
    gate.paused = set()
    await consumer._getmany(active_partitions=faust_set, timeout=0.01)
    assert consumer.asked[-1] == {ORDERS, PAYMENTS, STATE}


async def test_input_pause_sets_the_gate_of_a_tuned_app_and_leaves_others_alone() -> None:
    class Tuned:
        stream_gate = StreamGate(App(), Consumer(App()))

    pause = InputPause(Tuned())  # type: ignore[arg-type]
    assert pause.apply({("orders", 0)}) == 1
    assert Tuned.stream_gate.paused == {ORDERS}
    assert pause.apply(set()) == 0
    assert Tuned.stream_gate.paused == set()
    assert InputPause(object()).apply({("orders", 0)}) == 0  # type: ignore[arg-type]


async def test_a_fetch_waits_briefly_while_a_stream_buffer_is_under_pressure() -> None:
    """A partition Faust took out of the fetch under buffer pressure comes back when its stream
    drains, and only the next fetch asks for it: meanwhile a fetch waits ``PRESSURE_POLL``, not
    the loop's second (the router idled, its queue drained, while the loop waited on the rest)."""
    _, consumer, _ = gated()
    await consumer._getmany(active_partitions={PAYMENTS, STATE}, timeout=1.0)
    consumer._buffered_partitions.add(ORDERS)  # Consumer.on_buffer_full
    await consumer._getmany(active_partitions={PAYMENTS, STATE}, timeout=1.0)
    consumer._buffered_partitions.clear()  # Consumer.on_buffer_drop
    await consumer._getmany(active_partitions={ORDERS, PAYMENTS, STATE}, timeout=1.0)
    assert consumer.timeouts == [1.0, PRESSURE_POLL, 1.0]
