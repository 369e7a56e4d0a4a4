"""A drain cut short (a stop, a rebalance) keeps what it had not handed to the producer, and
a record batch the producer gave up on is never passed over in silence.

Faust commits the offsets of a batch the agent has finished even when the drain of what the
batch produced was cancelled on the way out; the next drain (Faust's flush before that commit
does one) must still send it. The producer here records batches and blocks on one topic.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from orderwatch.agents.app import Persistence
from orderwatch.agents.outbox import DeliveryFailed, Outbox
from tests.agents.test_shell import Recorder, feed, make_shell, scenario


class Batch:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def append(self, **record: Any) -> bool:
        self.records.append(record)
        return True

    def record_count(self) -> int:
        return len(self.records)


class Producer:
    """The calls ``Outbox`` makes on aiokafka's producer; sends to ``blocked`` never return."""

    def __init__(self, blocked: str | None) -> None:
        self.blocked = blocked
        self.sent: list[tuple[str, int, int]] = []
        self.waiting = asyncio.Event()

    def create_batch(self) -> Batch:
        return Batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    async def send_batch(self, batch: Batch, topic: str, partition: int) -> None:
        if topic == self.blocked:
            self.waiting.set()
            await asyncio.Event().wait()
        self.sent.append((topic, partition, batch.record_count()))


async def test_a_cancelled_drain_keeps_the_unsent_messages_in_order() -> None:
    producer = Producer(blocked="b")
    outbox = Outbox(lambda: producer)
    outbox.put("a", b"k1", b"v1", 0)
    outbox.put("b", b"k2", b"v2", 0)
    outbox.put("c", b"k3", b"v3", 1)
    drain = asyncio.create_task(outbox.drain())
    await asyncio.wait_for(producer.waiting.wait(), 10)
    drain.cancel()
    await asyncio.gather(drain, return_exceptions=True)
    assert producer.sent == [("a", 0, 1)]
    assert [m[0] for m in outbox.pending] == ["b", "c"], "kept, in their order"
    producer.blocked = None
    assert await outbox.drain() == 2
    assert producer.sent == [("a", 0, 1), ("b", 0, 1), ("c", 1, 1)]


class Delivering(Producer):
    """Records batches; each send returns its delivery future, resolved as ``outcome`` says."""

    def __init__(self) -> None:
        super().__init__(blocked=None)
        self.outcome: BaseException | None = None

    async def send_batch(self, batch: Batch, topic: str, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, partition, batch.record_count()))
        future = asyncio.get_running_loop().create_future()
        if self.outcome is None:
            future.set_result((topic, partition))
        else:
            future.set_exception(self.outcome)
        return future


async def test_check_reports_a_failed_delivery_and_never_waits() -> None:
    producer = Delivering()
    outbox = Outbox(lambda: producer)
    outbox.put("a", b"k", b"v", 0)
    await outbox.drain()
    late = asyncio.get_running_loop().create_future()
    outbox.unsettled.append(("a", 1, late))  # a batch still on its way
    outbox.check()
    assert [(t, p) for t, p, _ in outbox.unsettled] == [("a", 1)], "the delivered one forgotten"
    late.set_exception(KafkaTimeoutError())  # retries spent: aiokafka fails the batch's future
    with pytest.raises(DeliveryFailed, match=r"to a\[1\] was not delivered: KafkaTimeoutError"):
        outbox.check()
    outbox.unsettled.clear()  # the worker has ended there
    producer.outcome = KafkaTimeoutError()
    outbox.put("b", b"k", b"v", 0)
    await outbox.drain()
    with pytest.raises(DeliveryFailed, match=r"to b\[0\]"):
        outbox.check()


async def test_a_lost_envelope_stops_the_state_flush_before_a_position_past_it_is_written() -> None:
    """Stage 2 skips an item at or before the last position it read from the item's input
    (``Shell._unread``). An envelope lost on the way while a later one arrived would leave its
    items behind that position: read again after a restart, they would look like copies. So
    the state flush checks first, and on a failure writes nothing (the worker then ends)."""
    producer = Delivering()
    outbox = Outbox(lambda: producer)
    table = SimpleNamespace(data={})
    persistence = Persistence(SimpleNamespace(table=table, changelog_name="cl"), outbox)  # type: ignore[arg-type]
    rec = Recorder()
    shell = make_shell(rec)
    shell.send_changelog = persistence.send_changelog
    persistence.shell = shell
    feed(shell, rec, scenario()[:40])
    lost = asyncio.get_running_loop().create_future()
    lost.set_exception(KafkaTimeoutError())
    outbox.unsettled.append(("shard", 0, lost))  # an envelope sent before those stage 2 read
    with pytest.raises(DeliveryFailed):
        await persistence.persist()
    assert table.data == {}, "state and positions written past a lost envelope"
    outbox.unsettled.clear()
    await persistence.persist()  # the same flush with every delivery made
    assert any(key.startswith(b"*:read:") for key in table.data), "no positions written"
