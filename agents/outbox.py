"""Produce what the shell decided in batches, straight into the Kafka producer's accumulator.

Faust's ``send_soon`` queues each message and awaits it through its own buffer one at a time;
that per-message hop was the largest cost of the worker (profiled: ~20 % of its time). The shell
stays synchronous and appends here; after each agent batch or timer tick the agent drains the
outbox into one record batch per topic-partition of Faust's own aiokafka producer. Faust flushes
that producer before it commits input offsets, so at-least-once holds exactly as before: nothing
is marked read before what it produced is on the broker.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from orderwatch.agents.shell import partition_for

Message = tuple[str, bytes | None, bytes | None, int | None, Any]


class Outbox:
    """Messages decided by the synchronous shell, waiting for the next ``drain``."""

    def __init__(self, producer: Callable[[], Any]) -> None:
        self._producer = producer
        self.pending: list[Message] = []
        self._partitions: dict[str, int] = {}
        #: (topic, partition) -> the send future of the last record batch handed to it (the
        #: worker reads the changelog offset a flush reached from it)
        self.last_sent: dict[tuple[str, int], Any] = {}
        # the router, the detector, the timer and a commit all drain: one at a time, so two
        # writes of the same key (a changelog shard, a shard-topic envelope) keep their order
        self._lock = asyncio.Lock()

    def put(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Any = None,
    ) -> None:
        self.pending.append((topic, key, value, partition, headers))

    async def _count(self, producer: Any, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = len(await producer.partitions_for(topic))
            self._partitions[topic] = count
        return count

    async def drain(self) -> int:
        """Hand everything pending to the producer, one batch per topic-partition."""
        if not self.pending:
            return 0
        async with self._lock:
            return await self._drain()

    async def _drain(self) -> int:
        messages, self.pending = self.pending, []
        producer = self._producer()
        groups: dict[tuple[str, int], list[Message]] = defaultdict(list)
        for message in messages:
            topic, key, _, partition, _ = message
            if partition is None:
                # Kafka's default partitioner, as any client keying by the same bytes would
                partition = partition_for(key or b"", await self._count(producer, topic))
            groups[(topic, partition)].append(message)
        unsent = list(groups.items())
        try:
            while unsent:
                (topic, partition), group = unsent[0]
                await self._send(producer, topic, partition, group)
                unsent.pop(0)
        except BaseException:
            # cancelled (a stop, a rebalance) or failed half-way: what was not handed over
            # waits for the next drain (Faust's flush before a commit does one), in its order,
            # rather than being dropped while its input could still be committed
            self.pending[:0] = [m for _, group in unsent for m in group]
            raise
        return len(messages)

    async def _send(self, producer: Any, topic: str, partition: int, group: list[Message]) -> None:
        batch = producer.create_batch()
        for _, key, value, _, headers in group:
            if batch.append(key=key, value=value, timestamp=None, headers=headers or []):
                continue
            if batch.record_count():
                await producer.send_batch(batch, topic, partition=partition)
                batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers or []):
                continue
            # larger than a whole batch: the plain path takes any size the broker allows
            await producer.send(topic, value, key=key, partition=partition, headers=headers)
        if batch.record_count():
            sent = await producer.send_batch(batch, topic, partition=partition)
            self.last_sent[(topic, partition)] = sent
