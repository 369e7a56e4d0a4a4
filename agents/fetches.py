"""When the worker's consumer last had a fetch response for an input partition.

The evidence ``Shell.watermark`` measures an input's idleness by (``Shell.look``'s and
``Shell.send_watermarks``' ``fetched``): aiokafka stamps a partition's state with the wall time
of every fetch response that carries it, empty or not, together with its high watermark
(``AIOKafkaConsumer.last_poll_timestamp``). A router whose loop was blocked has no newer
response, so its inputs cannot age into "idle" on high watermarks from before the stall.

Wiring (``agents/app.py``, owned elsewhere this session): ``fetched = app_fetch_times(app)``,
passed as the last argument of ``shell.look`` in the router agent and of
``shell.send_watermarks`` in the sweep timer. Until then the shell measures idleness in wall time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from aiokafka import TopicPartition

Fetched = Callable[[str, int], float | None]


def fetch_times(consumer: Callable[[], Any]) -> Fetched:
    """``fetched(topic, partition)``: wall seconds of the last fetch response for the partition
    of the aiokafka consumer ``consumer()`` returns; None before its first one, when it is not
    assigned, or when the consumer cannot tell (not started, another aiokafka)."""

    def fetched(topic: str, partition: int) -> float | None:
        try:
            ms = consumer().last_poll_timestamp(TopicPartition(topic, partition))
        except Exception:  # not assigned (an assertion in aiokafka), not started, renamed
            return None
        return None if ms is None else float(ms) / 1000.0

    return fetched


def app_fetch_times(app: faust.App) -> Fetched:
    """``fetch_times`` of a Faust app's aiokafka consumer (Faust's consumer thread holds it)."""
    return fetch_times(lambda: app.consumer._thread._ensure_consumer())  # type: ignore[attr-defined]
