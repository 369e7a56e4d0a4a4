"""Run the real worker as a subprocess against the real broker, and talk Kafka to it.

Every wait here polls a condition against a deadline: no test sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from orderwatch.broker import create_topics, free_port
from orderwatch.simulation.traffic import TOPICS

STREAMS = ("orders", "payment-callbacks", "inventory", "logistics", "blacklist")


def topic_for(event: dict[str, Any]) -> str:
    prefix = event["type"].split(".")[0]
    return {
        "order": "orders",
        "payment": "payment-callbacks",
        "inventory": "inventory",
        "logistics": "logistics",
        "blacklist": "blacklist",
        "command": "order-exception-commands",
        "action": "order-action-results",
    }[prefix]


def key_for(event: dict[str, Any]) -> bytes | None:
    key = (
        event.get("order_id") or event.get("sku") or event.get("value") or event.get("exception_id")
    )
    return str(key).encode() if key else None


@dataclass
class Topics:
    """Topic names unique to one test, so tests sharing a broker never see each other."""

    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def name(self, base: str) -> str:
        return f"{self.prefix}-{base}"

    @property
    def exceptions(self) -> str:
        return self.name("order-exceptions")

    @property
    def dlq(self) -> str:
        return self.name("orderwatch-dlq")

    @property
    def commands(self) -> str:
        return self.name("order-exception-commands")

    @property
    def replies(self) -> str:
        return self.name("order-exception-command-results")

    @property
    def actions(self) -> str:
        return self.name("order-actions")

    @property
    def action_results(self) -> str:
        return self.name("order-action-results")

    @property
    def kpis(self) -> str:
        return self.name("order-kpis")

    @property
    def blacklist(self) -> str:
        return self.name("blacklist")

    @property
    def streams(self) -> dict[str, str]:
        """The simulator's streams to this test's topics (``produce(..., topics=...)``)."""
        return {stream: self.name(base) for stream, base in TOPICS.items()}

    def env(self) -> dict[str, str]:
        return {
            "ORDERWATCH_APP_ID": f"ow-{self.prefix}",
            "ORDERWATCH_TOPIC_ORDERS": self.name("orders"),
            "ORDERWATCH_TOPIC_PAYMENTS": self.name("payment-callbacks"),
            "ORDERWATCH_TOPIC_INVENTORY": self.name("inventory"),
            "ORDERWATCH_TOPIC_LOGISTICS": self.name("logistics"),
            "ORDERWATCH_TOPIC_BLACKLIST": self.name("blacklist"),
            "ORDERWATCH_TOPIC_EXCEPTIONS": self.exceptions,
            "ORDERWATCH_TOPIC_DLQ": self.dlq,
            "ORDERWATCH_TOPIC_COMMANDS": self.commands,
            "ORDERWATCH_TOPIC_COMMAND_RESULTS": self.replies,
            "ORDERWATCH_TOPIC_ACTIONS": self.actions,
            "ORDERWATCH_TOPIC_ACTION_RESULTS": self.action_results,
            "ORDERWATCH_TOPIC_KPIS": self.kpis,
        }

    async def create(
        self, bootstrap: str, partitions: int = 4, security: dict[str, Any] | None = None
    ) -> None:
        names = [self.name(s) for s in STREAMS] + [
            self.exceptions,
            self.dlq,
            self.commands,
            self.replies,
            self.actions,
            self.action_results,
            self.kpis,
        ]
        await create_topics(bootstrap, dict.fromkeys(names, partitions), security)


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


class WorkerProcess:
    """``orderwatch worker`` in a subprocess with its own app id, topics and data dir."""

    def __init__(self, bootstrap: str, topics: Topics, workdir: Path, **settings: str) -> None:
        self.log_path = workdir / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.metrics_port = free_port()
        self.env = dict(
            os.environ,
            ORDERWATCH_BOOTSTRAP_SERVERS=bootstrap,
            ORDERWATCH_DATA_DIR=str(workdir / "data"),
            ORDERWATCH_METRICS_PORT=str(self.metrics_port),
            ORDERWATCH_LOG_FORMAT="console",
            **topics.env(),
            **{f"ORDERWATCH_{k.upper()}": v for k, v in settings.items()},
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> WorkerProcess:
        """Start the process without waiting for it: for a worker expected never to be ready."""
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orderwatch.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        self.launch()
        wait_until(
            lambda: self.ready() or not self.alive(), timeout, "the worker's /readyz to answer 200"
        )
        assert self.alive(), f"worker died on start:\n{self.log()[-3000:]}"
        return self

    def get(self, path: str) -> tuple[int, bytes]:
        """GET a path of the worker's own HTTP endpoint (status 0: not answering)."""
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError:
            return 0, b""

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` on /metrics that carry these labels (0.0: none)."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        if status != 200:
            return 0.0
        return sum(
            float(sample.value)
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        if self.proc is not None and self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


async def produce(
    bootstrap: str,
    topics: Topics,
    events: list[dict[str, Any] | tuple[str, bytes]],
    security: dict[str, Any] | None = None,
) -> None:
    """Send events to their stream's topic (keyed as the contract says); raw (topic, bytes) too.

    What the broker holds is at every moment a prefix of ``events``, as an in-order source
    writes: aiokafka has one request in flight per broker and each request takes every
    partition's batch at once, so with no linger and batches that never fill (a batch cut
    mid-partition waits for the next request) no partition's later events are readable before
    another's earlier ones. With ``linger_ms=5`` a full 16 KiB batch of one partition went out
    while older events of another lingered; a test process starved of CPU for a second right
    then left the worker's inputs idle with a newer time read than some not yet readable, and
    its clock rightly passed them (the flaky live-equals-replay test).
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        max_request_size=4 * 1024 * 1024,
        max_batch_size=4 * 1024 * 1024,
        linger_ms=0,
        **(security or {}),
    )
    await producer.start()
    try:
        pending = []
        for item in events:
            if isinstance(item, tuple):
                base, raw = item
                pending.append(await producer.send(topics.name(base), raw))
            else:
                pending.append(
                    await producer.send(
                        topics.name(topic_for(item)), orjson.dumps(item), key=key_for(item)
                    )
                )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


class Collector:
    """Reads a topic from the beginning in the background; ``wait_for`` polls what arrived."""

    def __init__(self, bootstrap: str, topic: str, security: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security or {}
        self.records: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Collector:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_bytes=8 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **self.security,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            self.records.append(record)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()

    def values(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.records]

    async def wait_for(
        self, check: Callable[[list[Any]], bool], within: float, what: str
    ) -> list[Any]:
        deadline = time.monotonic() + within
        while not check(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {within:.1f}s waiting for {what}; "
                    f"got {len(self.records)} records on {self.topic}"
                )
            await asyncio.sleep(0.05)
        return self.records
