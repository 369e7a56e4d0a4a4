"""Where a run's events go: a JSONL file with its manifest, or Kafka keyed per the contract."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from orderwatch.simulation.dating import _finish, _Pacer
from orderwatch.simulation.world import Event

if TYPE_CHECKING:
    from orderwatch.simulation.traffic import Simulator

TOPICS: dict[str, str] = {
    "order": "orders",
    "payment": "payment-callbacks",
    "inventory": "inventory",
    "logistics": "logistics",
    "blacklist": "blacklist",
}


def topic_and_key(event: Event, topics: Mapping[str, str] = TOPICS) -> tuple[str, str]:
    """The contract's topic table: per order on order streams, sku on inventory, value on lists."""
    stream = event["type"].split(".", 1)[0]
    topic = topics[stream]
    if stream == "inventory":
        return topic, event["sku"]
    if stream == "blacklist":
        return topic, event["value"]
    return topic, event.get("order_id") or event["event_id"]


def write_file(sim: Simulator, path: Path, rate: float = 0.0) -> dict[str, Any]:
    """Write the events as JSONL and the manifest beside it (``PATH.manifest.json``)."""
    clock = time.time if sim.cfg.demo else None
    pacer = _Pacer(rate)
    with open(path, "wb") as out:
        _write_lines(sim, out, clock, pacer)
    manifest = sim.manifest()
    manifest_path(path).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    return manifest


def _write_lines(
    sim: Simulator, out: BinaryIO, clock: Callable[[], float] | None, pacer: _Pacer
) -> None:
    write = out.write
    if pacer.rate <= 0 and clock is None:
        dumps = orjson.dumps
        buf: list[bytes] = []
        for ev in sim.events():
            buf.append(dumps(ev))
            if len(buf) >= 4096:
                buf.append(b"")
                write(b"\n".join(buf))
                buf = []
        if buf:
            buf.append(b"")
            write(b"\n".join(buf))
        return
    for ev in sim.events():
        wait = pacer.delay()
        if wait:
            out.flush()
            time.sleep(wait)
        write(_finish(ev, clock) + b"\n")


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


async def produce(
    sim: Simulator,
    bootstrap: str,
    rate: float = 0.0,
    topics: Mapping[str, str] = TOPICS,
) -> dict[str, Any]:
    """Send the events to Kafka, keyed per the contract's topic table."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        pacer = _Pacer(rate)
        for ev in sim.events():
            wait = pacer.delay()
            if wait:
                await asyncio.sleep(wait)
            body = _finish(ev, time.time if sim.cfg.demo else None)
            topic, key = topic_and_key(ev, topics)
            await producer.send(topic, body, key=key.encode("utf-8"))
        await producer.flush()
    finally:
        await producer.stop()
    return sim.manifest()
