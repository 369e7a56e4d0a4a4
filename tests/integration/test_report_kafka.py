"""``orderwatch report --bootstrap``: every message of the topic, up to its end, then stop.

Partition 0 holds the events in several batches, partition 1 a single batch, partition 2
nothing; Tansu's ListOffsets answers the base offset of a partition's last batch, so a reader
that trusted it alone would lose the last batch of partition 0 and all of partition 1.
"""

from __future__ import annotations

import io
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from orderwatch.broker import EmbeddedBroker, create_topics
from orderwatch.reports.summary import ReadStats, compute, read_topic
from tests.unit.test_report import week

pytestmark = pytest.mark.integration


async def test_reads_every_partition_to_its_end(broker: EmbeddedBroker) -> None:
    topic = f"report-{uuid.uuid4().hex[:8]}"
    await create_topics(broker.bootstrap, {topic: 3})
    events = week()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    await producer.start()
    try:
        for i, event in enumerate(events[:-3]):
            await producer.send(topic, event.model_dump_json().encode(), partition=0)
            if i % 7 == 6:
                await producer.flush()
        await producer.send(topic, b"{broken", partition=1)
        for event in events[-3:]:
            await producer.send(topic, event.model_dump_json().encode(), partition=1)
        await producer.flush()
    finally:
        await producer.stop()
    err = io.StringIO()
    stats = ReadStats(topic)
    totals: list[int] = []

    read = await read_topic(broker.bootstrap, topic, err, stats, on_total=totals.append)

    assert sorted(e.change_id for e in read) == sorted(e.change_id for e in events)
    assert (stats.records, stats.skipped) == (len(events) + 1, 1)
    assert err.getvalue().startswith("partition 1 offset 0: invalid_json")
    assert totals[-1] == len(events) + 1
    assert compute(read).exceptions == compute(events).exceptions
