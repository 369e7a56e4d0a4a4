"""The streaming runtime under stress, against the real broker and real worker processes.

Every test runs a simulated scenario that covers the whole rule catalog through the worker in
event-time mode and compares what lands on the exceptions topic with ``orderwatch replay`` of the
same events: live equals replay; kill -9 three times and nothing is lost or renamed; a second
worker joins and leaves; one of two workers is killed with -9; ten thousand poison pills; the
broker unreachable for 30 s; TLS.
"""

from __future__ import annotations

import asyncio
import io
import ssl
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderwatch.broker import EmbeddedBroker, free_port
from orderwatch.engine import Engine
from orderwatch.engine.catalog import CONTRACT_RULES
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from orderwatch.simulation.traffic import SimConfig, Simulator
from tests.factories import end_ticks, to_jsonl
from tests.integration.harness import Collector, Topics, WorkerProcess, produce
from tests.integration.proxy import Proxy

pytestmark = pytest.mark.integration

Key = tuple[str, str, str, str, int]
CONSUMED = "orderwatch_events_consumed_total"


def scenario(seed: int, orders: int = 120) -> list[dict[str, Any]]:
    """A generated day covering every rule, ended by a tick on every shard partition."""
    sim = Simulator(SimConfig(seed=seed, orders=orders, anomaly_rate=0.3))
    events = list(sim.events())
    return events + end_ticks(sim.manifest()["until"])


def replayed(events: list[dict[str, Any]]) -> set[Key]:
    out, err = io.BytesIO(), io.StringIO()
    replay(io.BytesIO(to_jsonl(events)).readlines(), Engine(load_catalog()), out, err)
    return {_key(orjson.loads(line)) for line in out.getvalue().splitlines()}


def _key(e: dict[str, Any]) -> Key:
    return (e["exception_id"], e["rule_id"], e["subject"], e["state"], e["escalation_level"])


def live(collector: Collector) -> set[Key]:
    return {_key(e) for e in collector.values()}


async def converge(collector: Collector, expected: set[Key], within: float) -> None:
    """Wait until the live set equals the replay set; on timeout, show the difference."""
    try:
        await collector.wait_for(lambda _: live(collector) >= expected, within, "live ⊇ replay")
    except AssertionError as err:
        got = live(collector)
        missing = sorted(expected - got)[:10]
        extra = sorted(got - expected)[:10]
        raise AssertionError(
            f"{err}\nmissing {len(expected - got)}: {missing}\nextra: {extra}"
        ) from None
    assert live(collector) == expected, sorted(live(collector) - expected)[:10]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def start_worker(bootstrap: str, topics: Topics, workdir: Path) -> WorkerProcess:
    return WorkerProcess(bootstrap, topics, workdir, clock="event").start()


async def test_live_equals_replay_for_every_rule(
    broker: EmbeddedBroker, topics: Topics, workdir: Path, workers: list[WorkerProcess]
) -> None:
    events = scenario(seed=11)
    expected = replayed(events)
    assert {k[1] for k in expected} >= set(CONTRACT_RULES), "the scenario covers every rule"
    workers.append(start_worker(broker.bootstrap, topics, workdir))
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        await produce(broker.bootstrap, topics, list(events))
        await converge(out, expected, 90)


async def test_kill_9_three_times_loses_nothing_and_renames_nothing(
    broker: EmbeddedBroker, topics: Topics, workdir: Path, workers: list[WorkerProcess]
) -> None:
    events = scenario(seed=12)
    expected = replayed(events)
    size = len(events) // 4
    chunks = [events[i * size : (i + 1) * size] for i in range(3)] + [events[3 * size :]]
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        for i, chunk in enumerate(chunks):
            worker = start_worker(broker.bootstrap, topics, workdir)
            workers.append(worker)
            await produce(broker.bootstrap, topics, list(chunk))
            if i < 3:
                # kill mid-stream: once it has read part of this chunk, not after it is done
                part = len(chunk) // 3
                await out.wait_for(
                    lambda _, w=worker, n=part: w.metric(CONSUMED) >= n,
                    60,
                    "part of the chunk read",
                )
                worker.kill()
        await converge(out, expected, 120)
    assert {k[0] for k in live(out)} <= {k[0] for k in expected}, "no id replay would not give"


async def test_a_second_worker_joins_and_leaves_mid_stream(
    broker: EmbeddedBroker, topics: Topics, workdir: Path, workers: list[WorkerProcess]
) -> None:
    events = scenario(seed=13)
    expected = replayed(events)
    third = len(events) // 3
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        first = start_worker(broker.bootstrap, topics, workdir)
        workers.append(first)
        await produce(broker.bootstrap, topics, events[:third])
        (workdir / "second").mkdir()
        second = start_worker(broker.bootstrap, topics, workdir / "second")
        workers.append(second)
        await produce(broker.bootstrap, topics, events[third : 2 * third])
        await out.wait_for(lambda _: second.metric(CONSUMED) > 0, 60, "the second worker reading")
        second.stop()
        await produce(broker.bootstrap, topics, events[2 * third :])
        await converge(out, expected, 120)


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_kill_9_of_one_of_two_workers_loses_nothing_and_renames_nothing(
    broker: EmbeddedBroker,
    topics: Topics,
    workdir: Path,
    workers: list[WorkerProcess],
    store: str,
) -> None:
    """One of two workers is killed with -9 while events stream: the survivor takes its inputs
    and shard partitions over (after the session timeout) and live still equals replay, with no
    exception under an id replay would not give. Before the ``StreamGate`` and the watermark's
    wait for inputs with nothing to read (the join/leave test's causes) it missed 27 exceptions
    and raised others replay does not (issue 13: 7-36 missing, either store)."""
    events = scenario(seed=16)
    expected = replayed(events)
    third = len(events) // 3
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    async with Collector(broker.bootstrap, topics.exceptions) as out:
        a = WorkerProcess(broker.bootstrap, topics, workdir / "a", clock="event", store=store)
        workers.append(a.start())
        b = WorkerProcess(broker.bootstrap, topics, workdir / "b", clock="event", store=store)
        workers.append(b.start())
        await produce(broker.bootstrap, topics, events[:third])
        # both read (the join's rebalance is over), then b dies in the middle of the next third
        await out.wait_for(lambda _: b.metric(CONSUMED) > 0, 90, "the second worker reading")
        read = b.metric(CONSUMED)
        await produce(broker.bootstrap, topics, events[third : 2 * third])
        await out.wait_for(
            lambda _: b.metric(CONSUMED) > read, 60, "the second worker reading the next third"
        )
        b.kill()
        await produce(broker.bootstrap, topics, events[2 * third :])
        await converge(out, expected, 120)
    assert {k[0] for k in live(out)} <= {k[0] for k in expected}, "no id replay would not give"


def poison_pills(n: int) -> list[tuple[str, bytes]]:
    """Bad messages of many kinds, spread over the input topics."""
    valid = orjson.loads(orjson.dumps(scenario(seed=99, orders=5)[0]))
    kinds: list[bytes] = [
        b"not json at all",
        b"\xff\xfe\xfd invalid utf-8",
        orjson.dumps({**valid, "occurred_at": 12}),
        orjson.dumps({k: v for k, v in valid.items() if k != "event_id"}),
        orjson.dumps({**valid, "type": "order.teleported"}),
        b"[1, 2, 3]",
        orjson.dumps({**valid, "event_id": ""}),
        b"",
    ]
    streams = ["orders", "payment-callbacks", "inventory", "logistics"]
    pills: list[tuple[str, bytes]] = []
    for i in range(n):
        body = kinds[i % len(kinds)]
        if i % 2000 == 1999:
            body = b'{"type": "order.created", "pad": "' + b"x" * 1_000_000 + b'"}'
        pills.append((streams[i % len(streams)], body))
    return pills


async def test_ten_thousand_poison_pills_are_dead_lettered_and_traffic_flows(
    broker: EmbeddedBroker, topics: Topics, workdir: Path, workers: list[WorkerProcess]
) -> None:
    events = scenario(seed=14, orders=60)
    expected = replayed(events)
    pills = poison_pills(10_000)
    mixed: list[dict[str, Any] | tuple[str, bytes]] = []
    step = max(1, len(pills) // len(events))
    for i, event in enumerate(events):
        mixed.extend(pills[i * step : (i + 1) * step])
        mixed.append(event)
    mixed.extend(pills[len(events) * step :])
    worker = start_worker(broker.bootstrap, topics, workdir)
    workers.append(worker)
    async with (
        Collector(broker.bootstrap, topics.exceptions) as out,
        Collector(broker.bootstrap, topics.dlq) as dlq,
    ):
        await produce(broker.bootstrap, topics, mixed)
        await dlq.wait_for(lambda r: len(r) >= 10_000, 120, "10,000 dead letters")
        await converge(out, expected, 60)
        reasons = {dict(r.headers)["orderwatch.error.reason"] for r in dlq.records}
        assert reasons >= {
            b"invalid_json",
            b"invalid_utf8",
            b"schema",
            b"unknown_type",
            b"not_an_object",
            b"too_large",
        }
        assert len(dlq.records) == 10_000
    invalid = worker.metric("orderwatch_invalid_messages_total")
    assert invalid == 10_000


async def test_broker_unreachable_for_30_seconds_then_back(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """Tansu advertises the proxy's address, so every client connection crosses the cut."""
    upstream = free_port()
    proxy = Proxy(upstream).start()
    broker = EmbeddedBroker(port=upstream, advertised_port=proxy.port, log_path=tmp_path / "b.log")
    await asyncio.to_thread(broker.start)
    try:
        bootstrap = f"127.0.0.1:{proxy.port}"
        topics = Topics()
        await topics.create(bootstrap)
        events = scenario(seed=15, orders=60)
        expected = replayed(events)
        half = len(events) // 2
        worker = start_worker(bootstrap, topics, tmp_path)
        workers.append(worker)
        async with Collector(bootstrap, topics.exceptions) as out:
            await produce(bootstrap, topics, events[:half])
            await out.wait_for(lambda _: worker.metric(CONSUMED) >= half, 60, "first half read")
            proxy.cut()
            await asyncio.sleep(30)  # the outage itself: the broker is unreachable for 30 s
            proxy.restore()
            await produce(bootstrap, topics, events[half:])
            await converge(out, expected, 120)
        assert worker.alive(), "resumed without a restart"
        pid = worker.proc.pid if worker.proc else None
        assert pid is not None and worker.ready()
    finally:
        broker.stop()
        proxy.stop()


async def test_worker_talks_tls_to_the_broker(tmp_path: Path, workers: list[WorkerProcess]) -> None:
    """A TLS-terminating proxy with a test CA in front of Tansu; the worker verifies the cert."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client_ctx = ssl.create_default_context(cafile=str(ca_file))

    upstream = free_port()
    proxy = Proxy(upstream, tls=server_ctx).start()
    broker = EmbeddedBroker(port=upstream, advertised_port=proxy.port, log_path=tmp_path / "b.log")
    await asyncio.to_thread(broker.start)
    security = {"security_protocol": "SSL", "ssl_context": client_ctx}
    try:
        bootstrap = f"127.0.0.1:{proxy.port}"
        topics = Topics()
        await topics.create(bootstrap, security=security)
        events = scenario(seed=16, orders=20)
        expected = replayed(events)
        worker = WorkerProcess(
            bootstrap,
            topics,
            tmp_path,
            clock="event",
            security_protocol="SSL",
            ssl_cafile=str(ca_file),
        ).start()
        workers.append(worker)
        async with Collector(bootstrap, topics.exceptions, security) as out:
            await produce(bootstrap, topics, list(events), security)
            await converge(out, expected, 90)
        assert proxy.connections > 0
    finally:
        broker.stop()
        proxy.stop()
