"""Run ``orderwatch console`` as a subprocess against the real broker, and drive it.

``ConsoleProcess`` starts the real console (its own data dir, users file, port, topic names);
``CommandStandIn`` answers operator commands as CONTRACT section 8 says, for as long as the worker
of this branch does not apply commands itself (issue 14): it reads the commands topic, checks
``expected_status`` and the status table, and publishes the reply and the exception event the
worker would publish. Once the worker applies commands, ``worker_applies_commands()`` is true and
the tests use the real worker instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from orderwatch.broker import create_topics, free_port
from orderwatch.console.auth import add_account
from tests.integration.harness import Topics, wait_until

PASSWORD = "correct horse battery"


def worker_applies_commands() -> bool:
    """True once the worker consumes the commands topic (issue 14's events.commands exists)."""
    return importlib.util.find_spec("orderwatch.events.commands") is not None


def console_env(topics: Topics) -> dict[str, str]:
    return {
        **topics.env(),
        "ORDERWATCH_TOPIC_COMMANDS": topics.name("order-exception-commands"),
        "ORDERWATCH_TOPIC_COMMAND_RESULTS": topics.name("order-exception-command-results"),
    }


async def create_console_topics(bootstrap: str, topics: Topics) -> None:
    names = [
        topics.name("order-exception-commands"),
        topics.name("order-exception-command-results"),
    ]
    await create_topics(bootstrap, dict.fromkeys(names, 4))


class ConsoleProcess:
    """The console in a subprocess: accounts alice (operator), olga (operator of payments only),
    victor (viewer), all with ``PASSWORD``."""

    def __init__(self, bootstrap: str, topics: Topics, workdir: Path, **settings: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"console-{uuid.uuid4().hex[:6]}.log"
        users = workdir / "users.yaml"
        add_account(users, "alice", PASSWORD, "operator")
        add_account(users, "olga", PASSWORD, "operator", ("payments",))
        add_account(users, "victor", PASSWORD, "viewer")
        self.env = dict(
            os.environ,
            ORDERWATCH_BOOTSTRAP_SERVERS=bootstrap,
            ORDERWATCH_DATA_DIR=str(workdir / "data"),
            ORDERWATCH_CONSOLE_PORT=str(self.port),
            ORDERWATCH_CONSOLE_USERS_FILE=str(users),
            ORDERWATCH_LOG_FORMAT="console",
            **console_env(topics),
            **{f"ORDERWATCH_{k.upper()}": v for k, v in settings.items()},
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ConsoleProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orderwatch.cli", "console"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(
            lambda: self.caught_up() or self.proc is None or self.proc.poll() is not None,
            timeout,
            "the console to read its topics",
        )
        assert self.proc.poll() is None, f"console died:\n{self.log()[-3000:]}"
        return self

    def caught_up(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                return bool(orjson.loads(response.read())["caught_up"])
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


_ACCEPTS = {
    "command.acknowledge": ("open", "acknowledged"),
    "command.unacknowledge": ("acknowledged", "snoozed"),
    "command.assign": ("open", "acknowledged", "snoozed", "inhibited"),
    "command.snooze": ("acknowledged", "snoozed"),
    "command.comment": ("open", "acknowledged", "snoozed", "inhibited", "resolved"),
    "command.resolve": ("open", "acknowledged", "snoozed", "inhibited"),
    "command.reopen": ("resolved",),
}
_STATE = {
    "command.acknowledge": "acknowledged",
    "command.unacknowledge": "unacknowledged",
    "command.assign": "assigned",
    "command.snooze": "snoozed",
    "command.comment": "commented",
    "command.resolve": "resolved",
    "command.reopen": "reopened",
}


class CommandStandIn:
    """Applies commands as CONTRACT section 8 says, on the real broker (until the worker does)."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.latest: dict[str, dict[str, Any]] = {}
        self.commands: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CommandStandIn:
        self._consumer = AIOKafkaConsumer(
            self.topics.exceptions,
            self.topics.name("order-exception-commands"),
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await self._consumer.start()
        await self._producer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
        await self._producer.stop()

    async def _run(self) -> None:
        async for record in self._consumer:
            value = orjson.loads(record.value)
            if record.topic == self.topics.exceptions:
                prev = self.latest.get(value["exception_id"])
                if prev is None or value.get("seq", 1) >= prev.get("seq", 1):
                    self.latest[value["exception_id"]] = value
                continue
            self.commands.append(value)
            await self._apply(value)

    async def _apply(self, cmd: dict[str, Any]) -> None:
        doc = self.latest.get(cmd["exception_id"])
        status = None if doc is None else doc.get("status", "open")
        reason = None
        if doc is None:
            reason = "unknown_exception"
        elif cmd.get("expected_status") not in (None, status):
            reason = "stale"
        elif status not in _ACCEPTS[cmd["type"]]:
            reason = "invalid_transition"
        reply = {
            "command_id": cmd["event_id"],
            "exception_id": cmd["exception_id"],
            "accepted": reason is None,
            "reason": reason,
            "status": status,
        }
        if reason is None and doc is not None:
            new = dict(doc, state=_STATE[cmd["type"]], seq=doc.get("seq", 1) + 1, note=None)
            new["detected_at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            kind = cmd["type"]
            if kind == "command.acknowledge":
                new.update(status="acknowledged", acknowledged_by=cmd["actor"])
            elif kind == "command.assign":
                new["assignee"] = cmd["assignee"]
            elif kind == "command.comment":
                new["note"] = cmd["note"]
            elif kind == "command.resolve":
                new.update(
                    status="resolved",
                    resolved_by="operator",
                    resolution=cmd["resolution"],
                    note=cmd.get("note"),
                    acknowledged_by=None,
                )
            elif kind == "command.reopen":
                new.update(status="open", resolved_by=None, resolution=None, note=cmd.get("note"))
            elif kind == "command.unacknowledge":
                new.update(status="open", acknowledged_by=None)
            elif kind == "command.snooze":
                new.update(status="snoozed")
            reply["status"] = new.get("status", "open")
            self.latest[new["exception_id"]] = new
            await self._producer.send_and_wait(
                self.topics.exceptions, orjson.dumps(new), key=new["subject"].encode()
            )
        await self._producer.send_and_wait(
            self.topics.name("order-exception-command-results"),
            orjson.dumps(reply),
            key=cmd["exception_id"].encode(),
        )
