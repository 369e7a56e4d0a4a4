"""The worker's fast path through Faust's fetch loop, on mode's own events (no Kafka needed).

Faust's loop calls ``consumer.wait_first(callback(message), consumer.suspend_flow.wait())`` once per
message; the worker's replacement must await the callback itself while the flow runs, and hand
every other call (a suspended flow, a stopped or crashed consumer, any other caller) to Faust.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mode.utils.locks import Event

from orderwatch.agents.faust_internals import direct_delivery


class Consumer:
    """The attributes of Faust's consumer that ``direct_delivery`` reads."""

    def __init__(self) -> None:
        self.suspend_flow = Event()
        self._stopped = Event()
        self._crashed = Event()
        self.slow_calls: list[int] = []

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:  # noqa: ASYNC109
        """Stands for Faust's own wait_first: records the call and cancels what it was given."""
        self.slow_calls.append(len(coros))
        for coro in coros:
            coro.close()
        return "faust"


async def deliver(delivered: list[str], value: str) -> str:
    delivered.append(value)
    return value


async def test_a_running_flow_awaits_the_callback_itself() -> None:
    consumer = Consumer()
    wait_first = direct_delivery(consumer)
    delivered: list[str] = []
    tasks_before = len(asyncio.all_tasks())
    result = await wait_first(deliver(delivered, "m1"), consumer.suspend_flow.wait())
    assert delivered == ["m1"] and consumer.slow_calls == []
    assert result.results == ["m1"] and result.stopped is False
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_suspended_stopped_or_crashed_consumer_goes_through_faust() -> None:
    for flag in ("suspend_flow", "_stopped", "_crashed"):
        consumer = Consumer()
        getattr(consumer, flag).set()
        wait_first = direct_delivery(consumer)
        delivered: list[str] = []
        result = await wait_first(deliver(delivered, "m1"), consumer.suspend_flow.wait())
        assert (result, delivered, consumer.slow_calls) == ("faust", [], [2]), flag


async def test_other_calls_go_through_faust() -> None:
    consumer = Consumer()
    wait_first = direct_delivery(consumer)
    other = Event()
    delivered: list[str] = []
    # the second awaitable is not the consumer's flow event: not the fetch loop's call
    assert await wait_first(deliver(delivered, "m1"), other.wait()) == "faust"
    assert await wait_first(deliver(delivered, "m2")) == "faust"
    assert delivered == [] and consumer.slow_calls == [2, 1]
