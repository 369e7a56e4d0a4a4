"""``make demo`` restarts a worker that exits, as k8s or compose would."""

from __future__ import annotations

import subprocess
import sys
import time

from rich.console import Console

from orderwatch.demo import Supervisor


def test_a_worker_that_exits_is_started_again() -> None:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        code = "raise SystemExit(70)" if not started else "import time; time.sleep(60)"
        started.append(subprocess.Popen([sys.executable, "-c", code], start_new_session=True))
        return started[-1]

    supervisor = Supervisor(start, Console(stderr=True))
    supervisor.watch()
    deadline = time.monotonic() + 30
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert len(started) == 2 and started[0].wait(5) == 70
        assert supervisor.proc is started[1]
    finally:
        supervisor.stop()
    assert started[1].poll() is not None, "stopped with the demo"
