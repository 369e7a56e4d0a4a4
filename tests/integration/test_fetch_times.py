"""The evidence the event clock measures idleness by, from a real consumer and broker.

``Shell.watermark`` takes an input for idle only once a fetch response a second after it first
looked read to its end still shows that end (``fetch_times`` in ``agents/faust_internals.py``).
That holds only if aiokafka stamps a quiet partition at every (empty) fetch response, and
stamps nothing while the consumer's loop is blocked.
"""

from __future__ import annotations

import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orderwatch.agents.faust_internals import fetch_times
from orderwatch.broker import EmbeddedBroker, create_topics

pytestmark = pytest.mark.integration


async def test_a_quiet_partition_is_stamped_by_each_fetch_and_not_while_the_loop_is_blocked(
    broker: EmbeddedBroker,
) -> None:
    topic = f"fetches-{uuid.uuid4().hex[:8]}"
    await create_topics(broker.bootstrap, {topic: 1})
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        fetched = fetch_times(lambda: consumer)
        assert fetched("not-assigned", 0) is None

        async def stamp_after(t: float) -> float:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await consumer.getmany(tp, timeout_ms=50)
                stamp = fetched(topic, 0)
                if stamp is not None and stamp > t:
                    return stamp
            raise AssertionError(f"no fetch response stamped after {t}")

        first = await stamp_after(0.0)
        assert consumer.highwater(tp) == 0
        later = await stamp_after(first + 0.3)  # empty responses go on stamping it
        assert later - first >= 0.3

        blocked = time.time()
        # the loop blocked (a starved router): no response is read meanwhile
        time.sleep(1.2)  # noqa: ASYNC251
        stale = fetched(topic, 0)
        assert stale is not None and stale <= blocked, "no fetch response while blocked"

        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"x")
        finally:
            await producer.stop()
        sent = time.time()
        deadline = time.monotonic() + 10
        while consumer.highwater(tp) != 1:
            assert time.monotonic() < deadline, "the record's high watermark never came"
            await consumer.getmany(tp, timeout_ms=50)
        stamp = fetched(topic, 0)
        assert stamp is not None and stamp >= sent - 0.01, "stamped with its high watermark"
    finally:
        await consumer.stop()
