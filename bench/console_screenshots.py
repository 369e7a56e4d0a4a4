"""Retake the console screenshots of the README and docs/console.md from ``make demo``'s data.

Runs the demo (embedded broker, worker, traffic, simulated operator, reference executor, console)
for a while, signs in with the demo account it prints, and saves with Debian's chromium:

* ``docs/console-queue.png``: the queue (inhibited exceptions included: the demo's rules raise
  them), most urgent first;
* ``docs/console-actions.png``: the Approvals page (refunds awaiting approval).

``docs/console-detail.png`` and ``docs/console-overview.png`` are left alone.

    .venv/bin/python bench/console_screenshots.py [--warmup 60] [--out docs]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from orderwatch.broker import free_port

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
_ACCOUNT = re.compile(r"console (\S+)\s+user (\S+)\s+password (\S+)")


def start_demo(seconds: float, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DEMO_SECONDS=str(seconds), DEMO_CONSOLE_PORT=str(port), COLUMNS="200")
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orderwatch.demo"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )


def account(log: Path, within: float) -> tuple[str, str, str]:
    """The console URL, user and password the demo printed."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = _ACCOUNT.search(log.read_text(errors="replace"))
        if found:
            return found.group(1), found.group(2), found.group(3)
        time.sleep(0.5)
    raise SystemExit(
        f"the demo printed no console account within {within:.0f}s:\n{log.read_text()}"
    )


async def shoot(url: str, user: str, password: str, warmup: float, out: Path) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 860})
        await page.goto(url.rstrip("/") + "/login")
        await page.fill("#login-user", user)
        await page.fill("#login-password", password)
        await page.click("#login-submit")
        await page.wait_for_selector("#queue-table")
        # let the traffic fill the queue and the operator work on it (a picture of a realistic
        # moment, not a condition to wait for: the waits below check there is something to see)
        await asyncio.sleep(warmup)
        await page.goto(url.rstrip("/") + "/queue")
        await page.wait_for_selector("#queue-table tr.row", timeout=60_000)
        await page.wait_for_selector("#live.on", timeout=30_000)
        await page.screenshot(path=str(out / "console-queue.png"))
        await page.goto(url.rstrip("/") + "/actions")
        await page.wait_for_selector("#actions-table tr.arow", timeout=120_000)
        await page.screenshot(path=str(out / "console-actions.png"))
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of demo traffic first")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"console-screenshots-{os.getpid()}.log"
    demo = start_demo(args.warmup + 240, free_port(), log)
    try:
        url, user, password = account(log, 180)
        asyncio.run(shoot(url, user, password, args.warmup, args.out))
        print(f"saved {args.out / 'console-queue.png'} and {args.out / 'console-actions.png'}")
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)


if __name__ == "__main__":
    main()
