"""Produce what the shell decided in batches, straight into the Kafka producer's accumulator.

Faust's ``send_soon`` queues each message and awaits it through its own buffer one at a time;
that per-message hop was the largest cost of the worker (profiled: ~20 % of its time). The shell
stays synchronous and appends here; after each agent batch or timer tick the agent drains the
outbox into one record batch per topic-partition of Faust's own aiokafka producer. Faust flushes
that producer before it commits input offsets, so at-least-once holds exactly as before: nothing
is marked read before what it produced is on the broker.

A flush waits for delivery but does not look at how it went: a record batch that failed (the
producer's retries spent, a broker away longer than its request timeout) was lost without a
trace while its input offsets were committed. ``check`` looks, before and after each flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from orderwatch.agents.shell import partition_for

Message = tuple[str, bytes | None, bytes | None, int | None, Any]

log = logging.getLogger("orderwatch.worker")


class Outbox:
    """Messages decided by the synchronous shell, waiting for the next ``drain``."""

    def __init__(self, producer: Callable[[], Any]) -> None:
        self._producer = producer
        self.pending: list[Message] = []
        self._partitions: dict[str, int] = {}
        #: (topic, partition) -> the send future of the last record batch handed to it (the
        #: worker reads the changelog offset a flush reached from it)
        self.last_sent: dict[tuple[str, int], Any] = {}
        #: (topic, partition, delivery future) of what was handed over and not seen done yet
        #: (``check``)
        self.unsettled: list[tuple[str, int, asyncio.Future[Any]]] = []
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
            sent = await producer.send(topic, value, key=key, partition=partition, headers=headers)
            self.unsettled.append((topic, partition, sent))
        if batch.record_count():
            sent = await producer.send_batch(batch, topic, partition=partition)
            self.last_sent[(topic, partition)] = sent
            self.unsettled.append((topic, partition, sent))

    def check(self) -> None:
        """Raise ``DeliveryFailed`` for a record batch handed over that the producer gave up on
        (the worker then ends without committing: ``crash``); forget those delivered. Never
        waits: a batch still on its way is looked at next time.

        Called before the state is written (``Persistence.persist``, a revocation, a recovery)
        and after the flush that precedes a commit (``Persistence.delivered``), when every batch
        is done. Stage 2 keeps, per input, the last position it read (``Shell._unread``), written
        with the state: an envelope lost on the way while a later one of the same input arrived
        would leave its items behind that position, and after a restart, read again, they would
        look like copies and be skipped. aiokafka sends a partition's next batch only once the
        one before is done, so when stage 2 has read an envelope, every earlier one to its
        partition is done, and a failure among them is seen here before any position past it
        is written. No await either: an earlier version waited for the batches in flight
        before the state flush, which let the agents run in between (and, likely, changed what
        the flush parks: ``test_commands_live.py -k kill_9_between`` failed 1 run in 9, three
        at a time, against 9 of 9 passed before it and with this check).
        """
        pending: list[tuple[str, int, asyncio.Future[Any]]] = []
        for topic, partition, future in self.unsettled:
            if not future.done():
                pending.append((topic, partition, future))
            elif future.cancelled():
                raise self._failed(topic, partition, "cancelled")
            elif (error := future.exception()) is not None:
                raise self._failed(topic, partition, type(error).__name__) from error
        self.unsettled = pending

    @staticmethod
    def _failed(topic: str, partition: int, reason: str) -> DeliveryFailed:
        # the crash log names the exception's class only (a message may quote input): the
        # topic, partition and aiokafka's error class, which quote nothing, are logged here
        log.error("a record batch to %s[%d] was not delivered: %s", topic, partition, reason)
        return DeliveryFailed(f"a record batch to {topic}[{partition}] was not delivered: {reason}")


class DeliveryFailed(Exception):
    """A record batch the producer gave up on: what it held never reached the broker."""
