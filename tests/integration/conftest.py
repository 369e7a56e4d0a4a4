"""Fixtures of the integration tests that start worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from orderwatch.broker import EmbeddedBroker
from tests.integration.harness import Topics, WorkerProcess


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    """Topics of this test alone (unique names, 4 partitions each) on the session's broker; a
    module that shares its topics between tests overrides it with a module-scoped one."""
    t = Topics()
    asyncio.run(t.create(broker.bootstrap))
    return t


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test started: killed at its end, whatever happened."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.kill()
