"""The console's two goals: a fast queue at production size, and a click that shows its effect.

    .venv/bin/python bench/bench_console.py [--open 100000] [--requests 40] [--clicks 20]

1. Queue page with N open exceptions (goal p95 <= 300 ms). N synthetic open exceptions (every rule,
   team, severity; some assigned) are written through the projection's own ``Store.apply`` (its
   throughput is printed too: it is what a rebuild from the topics costs), then the real aiohttp
   application serves the queue over loopback with a signed-in session: the default page (most
   urgent first), newest first, deep pages, each filter, a text search. Printed per variant: the
   server's own time (its ``Server-Timing`` header) p50/p95, and the whole request's p95.
2. Click -> new state shown (goal p99 <= 1 s): the real broker, the real worker and the real
   console; Chromium signs in, and for each of ``--clicks`` exceptions raised by the worker clicks
   Acknowledge and waits until the page shows ``acknowledged``: the command goes to the topic, the
   worker applies it and publishes the reply and the new exception event, the console reads both
   and the page shows the new state.

Figures are printed, never asserted. The machine is shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orderwatch.console.auth import add_account
from orderwatch.console.settings import ConsoleSettings
from orderwatch.console.store import Store
from orderwatch.rulefiles import load_catalog

PASSWORD = "bench-password-1"
#: the tests' process harness (worker and console subprocesses) lives in the repository
REPO = str(Path(__file__).resolve().parents[1])


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def synthetic(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """N open exceptions over the last day, spread over every rule of the catalog."""
    catalog = load_catalog()
    rules = list(catalog.values())
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        rule = rules[i % len(rules)]
        at = (now - timedelta(seconds=rnd.uniform(0, 86400))).isoformat().replace("+00:00", "Z")
        order_id = f"SO{i:09d}"
        out.append(
            {
                "exception_id": str(uuid.UUID(int=rnd.getrandbits(128))),
                "rule_id": rule.rule_id,
                "category": rule.category,
                "severity": rule.severity,
                "state": "raised",
                "subject": order_id,
                "order_id": order_id,
                "sku": None,
                "warehouse_id": None,
                "detected_at": at,
                "event_time": at,
                "summary": f"Order {order_id}: {rule.title.lower()} (synthetic).",
                "evidence": {"event_ids": [f"ev-{i}"], "values": {"amount": f"{i % 997}.00"}},
                "owner": rule.owner,
                "actions": list(rule.actions),
                "escalation_level": 0,
                "seq": 1,
                "status": "open",
                "assignee": f"agent{i % 40}" if i % 3 == 0 else None,
                "acknowledged_by": None,
                "snoozed_until": None,
                "resolved_by": None,
                "resolution": None,
                "note": None,
                "inhibited_by": None,
            }
        )
    return out


async def queue_page(n_open: int, requests: int) -> None:
    from aiohttp import ClientSession, CookieJar, web

    from orderwatch.console.app import build_app

    workdir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    try:
        catalog = load_catalog()
        store = Store(
            workdir / "console.sqlite3", {r: x.escalate_after for r, x in catalog.items()}
        )
        docs = synthetic(n_open)
        started = time.perf_counter()
        for i in range(0, len(docs), 2000):
            store.apply(docs[i : i + 2000])
            store.analyze_if_grown()  # as the projector does after each batch
        took = time.perf_counter() - started
        print(
            f"projection: {n_open:,} exception events applied in {took:.1f} s "
            f"({n_open / took:,.0f} events/s, the cost of a rebuild from the topics)"
        )
        users = workdir / "users.yaml"
        add_account(users, "bench", PASSWORD, "viewer")
        settings = ConsoleSettings(data_dir=workdir, console_users_file=users, console_port=0)
        app = build_app(settings, store, project=False)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:  # an IP host
            async with http.get(base + "/login") as r:
                text = await r.text()
            token = text.split('name="csrf_token" value="')[1].split('"')[0]
            async with http.post(
                base + "/login",
                data={"user": "bench", "password": PASSWORD, "csrf_token": token, "next": "/"},
            ) as r:
                assert r.status == 200, r.status
            variants = {
                "default (most urgent)": "/queue",
                "newest first": "/queue?sort=newest",
                "page 1000": "/queue?page=1000",
                "owner + severity": "/queue?owner=risk&severity=high",
                "rule": "/queue?rule=payment.duplicate",
                "assignee": "/queue?assignee=agent7",
                "unassigned, newest": "/queue?assignee=-&sort=newest",
                "text search": "/queue?q=SO000012",
                "live refresh (partial)": "/queue?partial=1",
                "exception detail": None,
                "overview": "/overview",
            }
            print(
                f"queue page with {n_open:,} open exceptions, {requests} requests each "
                "(goal: server p95 <= 300 ms)"
            )
            print(f"  {'variant':<26} {'server p50':>10} {'server p95':>10} {'request p95':>11}")
            worst = 0.0  # over the queue variants: the goal is the queue page
            for name, path in variants.items():
                url = base + (path or f"/exceptions/{docs[len(docs) // 2]['exception_id']}")
                server: list[float] = []
                whole: list[float] = []
                for _ in range(requests):
                    t0 = time.perf_counter()
                    async with http.get(url) as r:
                        await r.read()
                        assert r.status == 200, (url, r.status)
                        timing = r.headers["Server-Timing"]
                    whole.append((time.perf_counter() - t0) * 1000)
                    server.append(float(timing.split("dur=")[1]))
                if path is not None and path.startswith("/queue"):
                    worst = max(worst, p(server, 0.95))
                print(
                    f"  {name:<26} {p(server, 0.5):>8.1f}ms {p(server, 0.95):>8.1f}ms "
                    f"{p(whole, 0.95):>9.1f}ms"
                )
            print(
                f"  worst queue server p95: {worst:.1f} ms = {worst / 300:.2f} of the 300 ms goal"
            )
        await runner.cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def click_round_trip(clicks: int) -> None:
    """Acknowledge ``clicks`` exceptions in Chromium; time click -> 'acknowledged' shown."""
    from playwright.async_api import async_playwright

    from orderwatch.broker import EmbeddedBroker

    sys.path.insert(0, REPO)
    h: Any = importlib.import_module("tests.integration.harness")
    ch: Any = importlib.import_module("tests.integration.console_harness")
    workdir = Path(tempfile.mkdtemp(prefix="bench-click-"))
    broker = await asyncio.to_thread(EmbeddedBroker(log_path=workdir / "broker.log").start)
    topics = h.Topics()
    worker = console = None
    try:
        await topics.create(broker.bootstrap)
        worker = h.WorkerProcess(broker.bootstrap, topics, workdir)
        await asyncio.to_thread(worker.start)
        console = ch.ConsoleProcess(broker.bootstrap, topics, workdir)
        await asyncio.to_thread(console.start)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        orders = [f"BENCH-{i:04d}" for i in range(clicks)]
        factories: Any = importlib.import_module("tests.factories")
        await h.produce(
            broker.bootstrap,
            topics,
            [factories.created(o, at=now, remark="urgent, bench") for o in orders],
        )
        times: list[float] = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--no-sandbox",
                    "--headless",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            page = await browser.new_page()
            await page.goto(console.url + "/login")
            await page.fill("#login-user", "alice")
            await page.fill("#login-password", ch.PASSWORD)
            await page.click("#login-submit")
            for order_id in orders:
                await page.goto(console.url + f"/queue?q={order_id.lower()}")
                link = page.locator("tr.row a").first
                await link.wait_for(timeout=30_000)
                await link.click()
                await page.wait_for_selector("#btn-acknowledge")
                t0 = time.perf_counter()
                await page.click("#btn-acknowledge")
                await page.wait_for_selector("#status.st-acknowledged", timeout=15_000)
                times.append((time.perf_counter() - t0) * 1000)
            await browser.close()
        print(
            f"click -> new state shown, {len(times)} acknowledgements through the live worker "
            "(goal p99 <= 1000 ms)"
        )
        print("  each, in order (ms): " + " ".join(f"{t:.0f}" for t in times))
        print(
            f"  p50 {statistics.median(times):.0f} ms  p95 {p(times, 0.95):.0f} ms  "
            f"p99 {p(times, 0.99):.0f} ms  max {max(times):.0f} ms  "
            f"= {p(times, 0.99) / 1000:.2f} of the goal"
        )
    finally:
        if console is not None:
            console.stop()
        if worker is not None:
            worker.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--open", type=int, default=100_000, help="open exceptions in SQLite")
    parser.add_argument("--requests", type=int, default=40, help="requests per queue variant")
    parser.add_argument("--clicks", type=int, default=20, help="acknowledgements to time")
    args = parser.parse_args()
    os.environ.setdefault("ORDERWATCH_LOG_LEVEL", "WARNING")
    asyncio.run(queue_page(args.open, args.requests))
    if args.clicks:
        asyncio.run(click_round_trip(args.clicks))


if __name__ == "__main__":
    main()
