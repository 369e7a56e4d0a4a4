"""Fixtures of the integration tests that start worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import WorkerProcess


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test started: killed at its end, whatever happened."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.kill()
