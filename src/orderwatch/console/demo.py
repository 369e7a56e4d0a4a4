"""The console beside the worker in ``make demo``: a demo account and a browser URL to print."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from orderwatch.broker import free_port
from orderwatch.console.auth import add_account

DEMO_USER = "demo"


@dataclass
class DemoConsole:
    process: subprocess.Popen[bytes]
    url: str
    user: str
    password: str

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def start_demo_console(bootstrap: str, workdir: Path, wait: float = 30.0) -> DemoConsole:
    """Start ``orderwatch console`` on 127.0.0.1 (port 8480 if free) with a new account.

    The account is an approver (an operator who may also approve remediation actions), so the
    demo's refunds awaiting approval can be tried too.
    """
    password = secrets.token_urlsafe(9)
    users = workdir / "console-users.yaml"
    add_account(users, DEMO_USER, password, "approver")
    port = int(os.environ.get("DEMO_CONSOLE_PORT", "0")) or _port(8480)
    env = dict(
        os.environ,
        ORDERWATCH_BOOTSTRAP_SERVERS=bootstrap,
        ORDERWATCH_DATA_DIR=str(workdir / "console-data"),
        ORDERWATCH_CONSOLE_PORT=str(port),
        ORDERWATCH_CONSOLE_USERS_FILE=str(users),
    )
    log = open(workdir / "console.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "orderwatch.cli", "console"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    return DemoConsole(process, url, DEMO_USER, password)


def _port(preferred: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred
