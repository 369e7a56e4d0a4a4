"""The bridge against a real Alertmanager (Debian's package) and the real broker.

Alertmanager's own API is the judge: what it lists as active is what an on-call engineer sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from orderwatch.alertmanager import BridgeConfig, run_bridge
from orderwatch.broker import EmbeddedBroker, create_topics, free_port
from orderwatch.events.codec import encode_exception
from orderwatch.events.exception import Evidence, ExceptionEvent

# one Alertmanager for the module: its tests stay in one xdist process
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("alertmanager")]

CANDIDATES = ("prometheus-alertmanager", "alertmanager")
DEADLINE = 30.0

CONFIG = """\
route:
  receiver: blackhole
  group_wait: 1s
receivers:
  - name: blackhole
"""


def _binary() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name) or (
            f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
        )
        if found:
            return found
    return None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager on a free 127.0.0.1 port, clustering off; yields its base URL."""
    binary = _binary()
    if binary is None:
        pytest.skip("alertmanager binary not found (apt-get install prometheus-alertmanager)")
    workdir = tmp_path_factory.mktemp("alertmanager")
    config = workdir / "alertmanager.yml"
    config.write_text(CONFIG)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"alertmanager did not start: {(workdir / 'alertmanager.log').read_text()}"
                )
            time.sleep(0.05)  # polling a condition with a deadline, not waiting for time
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def exception(state: str, level: int, ex_id: str) -> ExceptionEvent:
    now = datetime.now(UTC)
    return ExceptionEvent.model_validate(
        {
            "exception_id": ex_id,
            "rule_id": "logistics.not_shipped",
            "category": "logistics",
            "severity": "medium",
            "state": state,
            "subject": "O-42",
            "order_id": "O-42",
            "detected_at": now,
            "event_time": now - timedelta(minutes=5),
            "summary": "order O-42 paid 48h ago and not shipped",
            "evidence": Evidence(event_ids=["ev-1"]),
            "owner": "warehouse",
            "actions": ["check the pick list", "call the warehouse"],
            "escalation_level": level,
        }
    )


async def wait_for(check: Callable[[], Awaitable[Any]], what: str, within: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out after {within:.0f}s waiting for {what}; last saw {last!r}")


async def test_raise_escalate_resolve_reach_alertmanager(
    broker: EmbeddedBroker, alertmanager: str
) -> None:
    topic = f"order-exceptions-{uuid.uuid4().hex[:8]}"
    ex_id = str(uuid.uuid4())
    await create_topics(broker.bootstrap, {topic: 1})
    stop = asyncio.Event()
    config = BridgeConfig(
        alertmanager_url=alertmanager,
        bootstrap_servers=broker.bootstrap,
        topic=topic,
        group_id=f"bridge-{ex_id}",
        poll_timeout=0.2,
    )
    bridge = asyncio.create_task(run_bridge(config, stop))
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()

    async with aiohttp.ClientSession() as http:

        async def alerts() -> list[dict[str, Any]]:
            if bridge.done():
                bridge.result()  # surface the bridge's crash instead of timing out
                pytest.fail("bridge stopped")
            params = {"filter": f'exception_id="{ex_id}"', "active": "true"}
            async with http.get(f"{alertmanager}/api/v2/alerts", params=params) as resp:
                resp.raise_for_status()
                found: list[dict[str, Any]] = await resp.json()
                return found

        async def send(value: bytes) -> None:
            await producer.send_and_wait(topic, value, key=b"O-42")

        try:
            await send(b"{not an exception")  # must be logged and skipped
            await send(b'{"exception_id": "half"}')
            await send(encode_exception(exception("raised", 0, ex_id)))

            async def raised() -> list[dict[str, Any]]:
                return [a for a in await alerts() if a["labels"]["severity"] == "medium"]

            [alert] = await wait_for(raised, "the raised alert")
            assert alert["labels"] == {
                "alertname": "logistics.not_shipped",
                "severity": "medium",
                "owner": "warehouse",
                "category": "logistics",
                "exception_id": ex_id,
            }
            assert alert["annotations"]["summary"] == "order O-42 paid 48h ago and not shipped"
            assert alert["annotations"]["actions"] == "check the pick list\ncall the warehouse"
            assert alert["status"]["state"] in ("active", "unprocessed")

            await send(encode_exception(exception("escalated", 1, ex_id)))

            async def escalated() -> list[dict[str, Any]]:
                found = await alerts()
                severities = [a["labels"]["severity"] for a in found]
                return found if severities == ["high"] else []

            await wait_for(escalated, "one active alert, severity raised to high")

            await send(encode_exception(exception("resolved", 1, ex_id)))

            async def resolved() -> bool:
                return await alerts() == []

            await wait_for(resolved, "no active alert after the resolution")
        finally:
            stop.set()
            await producer.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(bridge, DEADLINE)


def v2_exception(state: str, seq: int, status: str, ex_id: str, **over: Any) -> ExceptionEvent:
    return exception(state, over.pop("level", 0), ex_id).model_copy(
        update={"seq": seq, "status": status, **over}
    )


async def test_operators_commands_follow_through_to_alertmanager(
    broker: EmbeddedBroker, alertmanager: str
) -> None:
    """ack -> silenced by a silence the bridge made; unack -> paging again; snooze -> silenced
    until its end; inhibited -> no alert; released -> active; resolved by an operator -> gone."""
    topic = f"order-exceptions-{uuid.uuid4().hex[:8]}"
    ex_id = str(uuid.uuid4())
    await create_topics(broker.bootstrap, {topic: 1})
    stop = asyncio.Event()
    config = BridgeConfig(
        alertmanager_url=alertmanager,
        bootstrap_servers=broker.bootstrap,
        topic=topic,
        group_id=f"bridge-{ex_id}",
        poll_timeout=0.2,
    )
    bridge = asyncio.create_task(run_bridge(config, stop))
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()

    async with aiohttp.ClientSession() as http:

        async def alerts() -> list[dict[str, Any]]:
            if bridge.done():
                bridge.result()
                pytest.fail("bridge stopped")
            params = {"filter": f'exception_id="{ex_id}"'}
            async with http.get(f"{alertmanager}/api/v2/alerts", params=params) as resp:
                resp.raise_for_status()
                found: list[dict[str, Any]] = await resp.json()
                return found

        async def silences() -> list[dict[str, Any]]:
            async with http.get(f"{alertmanager}/api/v2/silences") as resp:
                resp.raise_for_status()
                every: list[dict[str, Any]] = await resp.json()
            return [
                s
                for s in every
                if s["status"]["state"] == "active"
                and any(m["value"] == ex_id for m in s["matchers"])
            ]

        def in_state(wanted: str) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
            async def check() -> list[dict[str, Any]]:
                found = await alerts()
                return found if [a["status"]["state"] for a in found] == [wanted] else []

            return check

        async def send(event: ExceptionEvent) -> None:
            await producer.send_and_wait(topic, encode_exception(event), key=b"O-42")

        try:
            await send(v2_exception("raised", 1, "open", ex_id))
            await wait_for(in_state("active"), "the raised alert, active")

            await send(
                v2_exception("acknowledged", 2, "acknowledged", ex_id, acknowledged_by="alice")
            )
            [alert] = await wait_for(in_state("suppressed"), "the acknowledged alert, silenced")
            [silence] = await silences()
            assert alert["status"]["silencedBy"] == [silence["id"]]
            assert silence["createdBy"] == "orderwatch-alertmanager-bridge"
            assert "alice" in silence["comment"]
            assert alert["annotations"]["acknowledged_by"] == "alice"

            # a restarted bridge finds its silence again and can still remove it
            stop.set()
            await asyncio.wait_for(bridge, DEADLINE)
            stop = asyncio.Event()
            bridge = asyncio.create_task(run_bridge(config, stop))

            await send(v2_exception("unacknowledged", 3, "open", ex_id))
            await wait_for(in_state("active"), "the unacknowledged alert, paging again")
            assert await silences() == [], "the bridge removed its silence"

            await send(v2_exception("acknowledged", 4, "acknowledged", ex_id))
            until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
            await send(v2_exception("snoozed", 5, "snoozed", ex_id, snoozed_until=until))

            async def snooze_silence() -> list[dict[str, Any]]:
                found = await silences()
                return (
                    found
                    if len(found) == 1
                    and found[0]["endsAt"].startswith(until.strftime("%Y-%m-%dT%H:%M:%S"))
                    else []
                )

            await wait_for(snooze_silence, "one silence ending with the snooze")
            await wait_for(in_state("suppressed"), "the snoozed alert, silenced")

            await send(v2_exception("inhibited", 6, "inhibited", ex_id, inhibited_by="other"))

            async def no_active() -> bool:
                return all(a["status"]["state"] != "active" for a in await alerts()) and (
                    await silences() == []
                )

            await wait_for(no_active, "no alert while inhibited, no silence left")
            await send(v2_exception("raised", 7, "open", ex_id))
            await wait_for(in_state("active"), "released from inhibition: active again")

            await send(
                v2_exception(
                    "resolved", 8, "resolved", ex_id, resolved_by="operator", resolution="fixed"
                )
            )

            async def gone() -> bool:
                return await alerts() == []

            await wait_for(gone, "no alert at all after the operator resolved it")
        finally:
            stop.set()
            await producer.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(bridge, DEADLINE)
