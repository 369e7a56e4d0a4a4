"""The HTTP endpoints, served for real on 127.0.0.1 and read with a real aiohttp client."""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from orderwatch.http import start_http
from orderwatch.metrics import Metrics
from tests.metrics_samples import fill_sample_values


@dataclass
class Server:
    metrics: Metrics
    runner: web.AppRunner
    ready: list[bool]

    @property
    def base_url(self) -> str:
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    metrics = Metrics()
    ready = [False]  # flipped by tests; the lambda reads it at request time
    runner = await start_http("127.0.0.1", _free_port(), metrics, lambda: ready[0])
    try:
        yield Server(metrics, runner, ready)
    finally:
        await runner.cleanup()


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


def _sample(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == (labels or {}):
                return float(sample.value)
    return None


async def test_healthz_answers_ok_even_when_not_ready(server: Server) -> None:
    status, _, body = await _get(f"{server.base_url}/healthz")

    assert (status, body) == (200, "ok")


async def test_readyz_follows_is_ready(server: Server) -> None:
    before, _, _ = await _get(f"{server.base_url}/readyz")
    server.ready[0] = True
    after, _, _ = await _get(f"{server.base_url}/readyz")

    assert (before, after) == (503, 200)


async def test_readyz_is_503_when_the_probe_raises() -> None:
    def broken() -> bool:
        raise RuntimeError("tables gone")

    runner = await start_http("127.0.0.1", 0, Metrics(), broken)
    try:
        host, port = runner.addresses[0][:2]
        status, _, _ = await _get(f"http://{host}:{port}/readyz")
    finally:
        await runner.cleanup()

    assert status == 503


async def test_metrics_serves_the_text_format_and_values_move(server: Server) -> None:
    fill_sample_values(server.metrics)
    labels = {"topic": "orders", "type": "order.created"}
    url = f"{server.base_url}/metrics"

    status, content_type, first = await _get(url)
    server.metrics.events_consumed.labels(**labels).inc(5)
    server.metrics.ready.set(0)
    _, _, second = await _get(url)

    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert _sample(first, "orderwatch_events_consumed_total", labels) == 3
    assert _sample(second, "orderwatch_events_consumed_total", labels) == 8
    assert (_sample(first, "orderwatch_ready"), _sample(second, "orderwatch_ready")) == (1, 0)


async def test_binds_only_the_given_host(server: Server) -> None:
    hosts = {address[0] for address in server.runner.addresses}

    assert hosts == {"127.0.0.1"}


async def test_an_unknown_path_is_404(server: Server) -> None:
    status, _, _ = await _get(f"{server.base_url}/admin")

    assert status == 404


async def test_a_busy_port_raises_and_leaves_nothing_running(server: Server) -> None:
    busy_port = server.runner.addresses[0][1]

    with pytest.raises(OSError, match=str(busy_port)) as raised:
        await start_http("127.0.0.1", busy_port, Metrics(), lambda: False)

    assert raised.value.errno == errno.EADDRINUSE


async def test_metrics_renders_only_the_families_named(server: Server) -> None:
    """``/metrics?name[]=...``, as prometheus_client's own exporter: a poller of one counter
    gets that family alone (the pipeline bench polls it 4 times a second)."""
    server.metrics.events_consumed.labels(topic="orders", type="order.created").inc(3)
    server.metrics.shard_items.labels(stage="routed").inc(2)
    url = f"{server.base_url}/metrics?name[]=orderwatch_events_consumed_total"
    status, _, text = await _get(url)
    assert status == 200
    families = [family.name for family in text_string_to_metric_families(text)]
    assert families == ["orderwatch_events_consumed"]
    labels = {"topic": "orders", "type": "order.created"}
    assert _sample(text, "orderwatch_events_consumed_total", labels) == 3.0
    both = url + "&name[]=orderwatch_shard_items_total"
    _, _, text = await _get(both)
    assert _sample(text, "orderwatch_shard_items_total", {"stage": "routed"}) == 2.0
    _, _, everything = await _get(f"{server.base_url}/metrics")
    assert len(list(text_string_to_metric_families(everything))) > 10
