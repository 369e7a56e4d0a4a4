"""A drain cut short (a stop, a rebalance) keeps what it had not handed to the producer.

Faust commits the offsets of a batch the agent has finished even when the drain of what the
batch produced was cancelled on the way out; the next drain (Faust's flush before that commit
does one) must still send it. The producer here records batches and blocks on one topic.
"""

from __future__ import annotations

import asyncio
from typing import Any

from orderwatch.agents.outbox import Outbox


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
