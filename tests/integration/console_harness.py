"""Run ``orderwatch console`` as a subprocess against the real broker, and drive it.

``ConsoleProcess`` starts the real console (its own data dir, users file, port, topic names); the
real worker (``harness.WorkerProcess``) applies the commands the console sends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import orjson

from orderwatch.broker import free_port
from orderwatch.console.auth import add_account
from tests.integration.harness import Topics, wait_until

PASSWORD = "correct horse battery"


class ConsoleProcess:
    """The console in a subprocess: accounts alice (operator), olga (operator of payments only),
    victor (viewer), ada (approver), all with ``PASSWORD``."""

    def __init__(self, bootstrap: str, topics: Topics, workdir: Path, **settings: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"console-{uuid.uuid4().hex[:6]}.log"
        users = workdir / "users.yaml"
        add_account(users, "alice", PASSWORD, "operator")
        add_account(users, "olga", PASSWORD, "operator", ("payments",))
        add_account(users, "victor", PASSWORD, "viewer")
        add_account(users, "ada", PASSWORD, "approver")
        self.env = dict(
            os.environ,
            ORDERWATCH_BOOTSTRAP_SERVERS=bootstrap,
            ORDERWATCH_DATA_DIR=str(workdir / "data"),
            ORDERWATCH_CONSOLE_PORT=str(self.port),
            ORDERWATCH_CONSOLE_USERS_FILE=str(users),
            ORDERWATCH_LOG_FORMAT="console",
            **topics.env(),
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
