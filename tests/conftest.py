"""Shared fixtures: the real embedded broker (Tansu) for the session, never a fake of Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orderwatch.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One Tansu broker on a free 127.0.0.1 port for the whole test session."""
    log: Path = tmp_path_factory.mktemp("tansu") / "broker.log"
    with EmbeddedBroker(log_path=log) as embedded:
        yield embedded
