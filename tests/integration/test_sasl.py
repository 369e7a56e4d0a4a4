"""The worker's SASL/PLAIN settings against a broker that demands them.

Tansu has no SASL, so a SASL-terminating proxy stands in front of a Tansu that advertises the
proxy's address: every connection a client opens, bootstrap or not, has to authenticate, and the
proxy's counters say who did. Without this, ``ORDERWATCH_SASL_*`` could be ignored, misspelt or
mis-mapped to Faust and no test would notice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orderwatch.broker import EmbeddedBroker, free_port
from tests.integration.harness import Collector, Topics, WorkerProcess, produce, wait_until
from tests.integration.sasl_proxy import SaslProxy
from tests.integration.test_worker_runtime import converge, replayed, scenario

pytestmark = pytest.mark.integration

USER = "orderwatch"
PASSWORD = "correct-horse-battery-staple"


def sasl(password: str = PASSWORD) -> dict[str, Any]:
    """aiokafka client arguments for the test's own admin, producer and consumer."""
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": USER,
        "sasl_plain_password": password,
    }


def sasl_worker(bootstrap: str, topics: Topics, workdir: Path, password: str) -> WorkerProcess:
    return WorkerProcess(
        bootstrap,
        topics,
        workdir,
        clock="event",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=USER,
        sasl_password=password,
    )


def worker_sessions(proxy: SaslProxy) -> int:
    """Authenticated connections of the worker itself (Faust's client id is ``faust-<version>``).

    The test's own clients authenticate too, so a bare success count would prove nothing.
    """
    return sum(1 for c in proxy.clients if (c or "").startswith("faust"))


@dataclass
class SaslBroker:
    """The proxy and its broker; clients must dial the proxy, hence ``bootstrap``."""

    proxy: SaslProxy
    broker: EmbeddedBroker

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"


@pytest.fixture
def sasl_broker(tmp_path: Path) -> Iterator[SaslBroker]:
    """A Tansu of its own that advertises the proxy, so no client can go round the SASL check."""
    upstream = free_port()
    proxy = SaslProxy(upstream, USER, PASSWORD)
    proxy.start()
    broker = EmbeddedBroker(port=upstream, advertised_port=proxy.port, log_path=tmp_path / "b.log")
    try:
        broker.start()
        yield SaslBroker(proxy, broker)
    finally:
        broker.stop()
        proxy.stop()


async def test_worker_authenticates_with_sasl_plain(
    sasl_broker: SaslBroker, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """Live equals replay through the proxy, and the worker's own connections authenticated."""
    bootstrap, proxy = sasl_broker.bootstrap, sasl_broker.proxy
    topics = Topics()
    await topics.create(bootstrap, security=sasl())
    events = scenario(seed=17, orders=20)
    expected = replayed(events)
    worker = sasl_worker(bootstrap, topics, tmp_path, PASSWORD)
    workers.append(worker)
    await asyncio.to_thread(worker.start)
    async with Collector(bootstrap, topics.exceptions, sasl()) as out:
        await produce(bootstrap, topics, list(events), sasl())
        await converge(out, expected, 60)
    assert worker_sessions(proxy) >= 1, f"no Faust connection authenticated: {proxy.clients}"
    assert proxy.failures == 0
    assert proxy.refused == 0, "some client skipped SASL"


async def test_worker_with_a_wrong_password_never_gets_in(
    sasl_broker: SaslBroker, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """The proxy turns the worker away, and the worker neither becomes ready nor reads a thing.

    Tansu advertises only the proxy and the proxy pipes nothing before authentication, so no
    Faust session in ``proxy.clients`` means the worker never spoke to the broker at all. Events
    wait on its topics, so a worker that did get in would have something to read. Today the worker
    exits on the first refusal; were it to retry, three refusals show it stays locked out.
    """
    bootstrap, proxy = sasl_broker.bootstrap, sasl_broker.proxy
    topics = Topics()
    await topics.create(bootstrap, security=sasl())
    waiting: list[dict[str, Any] | tuple[str, bytes]] = [*scenario(seed=18, orders=5)]
    await produce(bootstrap, topics, waiting, sasl())
    worker = sasl_worker(bootstrap, topics, tmp_path, "wrong-" + PASSWORD)
    workers.append(worker.launch())
    await asyncio.to_thread(
        wait_until,
        lambda: proxy.failures >= 3 or not worker.alive(),
        25,
        "the proxy to refuse the worker three times (or the worker to give up)",
    )
    assert proxy.failures >= 1, worker.log()[-3000:]
    if not worker.alive():  # faust-streaming 0.15 gives up on bootstrap: the log must say why
        assert "SaslAuthenticationFailed" in worker.log(), worker.log()[-3000:]
    assert worker_sessions(proxy) == 0, proxy.clients
    assert not worker.ready()
    assert worker.metric("orderwatch_events_consumed_total") == 0
