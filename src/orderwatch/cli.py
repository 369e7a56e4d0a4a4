"""The ``orderwatch`` command: worker, replay, broker, schemas, rules check (and more).

Each command is a thin adapter: it parses arguments and calls a module that does the work, so the
same work is reachable from tests without a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from orderwatch.errors import OrderwatchError, RuleFileError

app = typer.Typer(
    help="orderwatch: a streaming detector of e-commerce order exceptions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="Validate and show rule files.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


def _parse_until(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"not an RFC 3339 timestamp: {value}") from None
    if parsed.tzinfo is None:
        raise typer.BadParameter("--until needs an offset (Z or +08:00)")
    return parsed


@app.command()
def replay(
    events: Annotated[str, typer.Argument(help="JSONL file of input events, or - for stdin")],
    until: Annotated[
        str | None, typer.Option(help="move the clock to this RFC 3339 time at the end")
    ] = None,
    rules: Annotated[Path | None, typer.Option(help="rules directory")] = None,
    replies: Annotated[
        Path | None, typer.Option(help="write the replies to the file's commands here (JSONL)")
    ] = None,
    actions: Annotated[
        Path | None, typer.Option(help="write the action events (section 10) here (JSONL)")
    ] = None,
    kpis: Annotated[
        Path | None, typer.Option(help="write the hourly KPI records (section 11) here (JSONL)")
    ] = None,
    progress_bar: Annotated[
        bool, typer.Option("--progress/--no-progress", help="progress bar on a terminal")
    ] = True,
) -> None:
    """Run the rules over a file of events; exception events go to stdout as JSON lines."""
    from orderwatch.engine import Engine
    from orderwatch.heap import tune_collector
    from orderwatch.replay import replay as run_replay
    from orderwatch.rulefiles import load_catalog

    tune_collector()
    until_at = _parse_until(until)
    try:
        catalog = load_catalog(rules)
    except RuleFileError as exc:
        typer.echo(f"orderwatch: cannot load rules: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        stream: BinaryIO = sys.stdin.buffer if events == "-" else open(events, "rb")  # noqa: SIM115
    except OSError as exc:
        typer.echo(f"orderwatch: cannot read {events}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    lines: Iterable[bytes] = stream
    progress = None
    if progress_bar and stream is not sys.stdin.buffer and sys.stderr.isatty():
        # a progress bar on the terminal only: stdout stays pure JSON lines for pipes
        from rich.console import Console
        from rich.progress import Progress

        progress = Progress(console=Console(stderr=True), transient=True)
        progress.start()
        task = progress.add_task("replay", total=os.fstat(stream.fileno()).st_size)
        lines = _counting(stream, lambda n: progress.advance(task, n))
    try:
        replies_out = open(replies, "wb") if replies is not None else None  # noqa: SIM115
    except OSError as exc:
        typer.echo(f"orderwatch: cannot write {replies}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    try:
        actions_out = open(actions, "wb") if actions is not None else None  # noqa: SIM115
    except OSError as exc:
        typer.echo(f"orderwatch: cannot write {actions}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    try:
        kpis_out = open(kpis, "wb") if kpis is not None else None  # noqa: SIM115
    except OSError as exc:
        typer.echo(f"orderwatch: cannot write {kpis}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    try:
        run_replay(
            lines,
            Engine(catalog, track_dirty=False),
            sys.stdout.buffer,
            sys.stderr,
            until_at,
            replies=replies_out,
            actions=actions_out,
            kpis=kpis_out,
        )
    except OSError as exc:
        typer.echo(f"orderwatch: cannot read {events}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    finally:
        if replies_out is not None:
            replies_out.close()
        if actions_out is not None:
            actions_out.close()
        if kpis_out is not None:
            kpis_out.close()
        if progress is not None:
            progress.stop()
        sys.stdout.flush()
        if stream is not sys.stdin.buffer:
            stream.close()


def _counting(stream: BinaryIO, advance: Callable[[int], None]) -> Iterator[bytes]:
    """Lines of a file, advancing a progress bar by the bytes read."""
    for line in stream:
        advance(len(line))
        yield line


@rules_app.command("check")
def rules_check(
    directory: Annotated[Path | None, typer.Argument(help="rules directory")] = None,
) -> None:
    """Validate a rules directory and print the effective catalog."""
    from rich.console import Console
    from rich.table import Table

    from orderwatch.engine.catalog import format_duration
    from orderwatch.rulefiles import load_catalog

    try:
        catalog = load_catalog(directory)
    except RuleFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    table = Table(title=f"{len(catalog)} rules from {catalog.directory}")
    for col in (
        "rule_id",
        "on",
        "severity",
        "owner",
        "escalate",
        "ack",
        "inhibited by",
        "params",
        "actions",
    ):
        table.add_column(col)
    for rule in catalog.values():
        params = ", ".join(
            f"{k}={format_duration(v) if k in _DURATION_PARAMS else v}"
            for k, v in rule.params.model_dump().items()
            if not isinstance(v, list)
        )
        table.add_row(
            rule.rule_id,
            "yes" if rule.enabled else "no",
            rule.severity,
            rule.owner,
            format_duration(rule.escalate_after) if rule.escalate_after else "never",
            format_duration(rule.ack_timeout) if rule.ack_timeout else "never",
            ", ".join(rule.inhibited_by),
            params,
            ", ".join(f"{p.type}:{p.mode}" for p in rule.remediation),
        )
    Console(width=160).print(table)


_DURATION_PARAMS = {"threshold", "grace", "window", "persist_for", "max_account_age", "silence"}


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="output directory")] = Path("schemas"),
) -> None:
    """Write the JSON Schemas of the input and exception events, generated from the models."""
    from orderwatch.schemas import write

    for path in write(out):
        typer.echo(str(path))


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1 (0: a free one)")] = 0,
) -> None:
    """Start the embedded Tansu broker on 127.0.0.1 and print its bootstrap address."""
    from orderwatch.broker import EmbeddedBroker

    embedded = EmbeddedBroker(port=port)
    try:
        embedded.start()
    except OrderwatchError as exc:
        typer.echo(f"orderwatch: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(embedded.bootstrap, err=False)
    sys.stdout.flush()
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        embedded.stop()


@app.command()
def worker() -> None:
    """Run the Faust worker (settings from ORDERWATCH_* environment variables)."""
    from orderwatch.agents.runner import run_worker

    run_worker()


@app.command()
def report(
    events: Annotated[
        str | None, typer.Argument(help="JSONL file of exception events, or - for stdin")
    ] = None,
    out: Annotated[Path, typer.Option(help="directory for report.html and the CSV tables")] = Path(
        "report"
    ),
    bootstrap: Annotated[
        str | None, typer.Option(help="read the topic from this Kafka host:port instead")
    ] = None,
    topic: Annotated[str, typer.Option(help="exceptions topic")] = "order-exceptions",
    top: Annotated[int, typer.Option(min=1, help="rows per breakdown in the HTML")] = 20,
    kpis: Annotated[
        Path | None, typer.Option(help="KPI records (replay --kpis, or order-kpis) to add")
    ] = None,
) -> None:
    """Weekly review of exceptions: counts, time to resolve, escalation; HTML plus CSV."""
    from orderwatch.report import run_report

    if (events is None) == (bootstrap is None):
        raise typer.BadParameter("give either a JSONL file (or -) or --bootstrap, not both")
    try:
        result, _, paths = run_report(
            out, events_path=events, bootstrap=bootstrap, topic=topic, top=top
        )
    except OrderwatchError as exc:
        typer.echo(f"orderwatch: {exc}", err=True)
        raise typer.Exit(1) from None
    if kpis is not None:  # v2: the key indicators section (CONTRACT section 11)
        from orderwatch.kpireport import add_to_report

        try:
            csv_path, skipped = add_to_report(paths[0], kpis)
        except OSError as exc:
            typer.echo(f"orderwatch: cannot read {kpis}: {exc.strerror}", err=True)
            raise typer.Exit(1) from None
        paths.append(csv_path)
        if skipped:
            typer.echo(f"orderwatch report: skipped {skipped} invalid KPI record(s)", err=True)
    typer.echo(f"{result.exceptions} exceptions; wrote {paths[0]} and {len(paths) - 1} CSV files")


@app.command("alertmanager-bridge")
def alertmanager_bridge(
    url: Annotated[
        str | None,
        typer.Option(
            envvar="ORDERWATCH_ALERTMANAGER_URL",
            help="Alertmanager base URL, e.g. http://alertmanager:9093",
        ),
    ] = None,
) -> None:
    """Post the exceptions of the exceptions topic to Alertmanager as alerts, until stopped."""
    from orderwatch.alertmanager import BridgeConfig, run_bridge
    from orderwatch.settings import Settings

    try:
        config = BridgeConfig.from_settings(Settings(), url)
    except ValueError as exc:
        typer.echo(f"orderwatch: {exc}", err=True)
        raise typer.Exit(2) from None
    stop = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_bridge(config, stop)

    asyncio.run(run())


@app.command()
def simulate(
    to_file: Annotated[
        Path | None, typer.Option(help="write JSONL here (manifest: PATH.manifest.json)")
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help="or produce to Kafka at host:port")] = None,
    orders: Annotated[int, typer.Option(help="healthy orders (anomalies come on top)")] = 1000,
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 1,
    start: Annotated[str | None, typer.Option(help="RFC 3339 start (default 2026-11-20Z)")] = None,
    duration: Annotated[str, typer.Option(help="span of order arrivals, e.g. 2h, 1d")] = "1d",
    anomaly_rate: Annotated[float, typer.Option(help="anomalies per healthy order")] = 0.02,
    anomalies: Annotated[int | None, typer.Option(help="exact anomaly count (wins)")] = None,
    mix: Annotated[
        str | None, typer.Option(help="rule[=weight],... or a family such as payment.")
    ] = None,
    demo: Annotated[bool, typer.Option(help="start now; backdate injected timeouts")] = False,
    rate: Annotated[float, typer.Option(help="events per second (0: as fast as possible)")] = 0.0,
    manifest: Annotated[Path | None, typer.Option(help="manifest path with --bootstrap")] = None,
    topic_orders: Annotated[str, typer.Option()] = "orders",
    topic_payments: Annotated[str, typer.Option()] = "payment-callbacks",
    topic_inventory: Annotated[str, typer.Option()] = "inventory",
    topic_logistics: Annotated[str, typer.Option()] = "logistics",
    topic_blacklist: Annotated[str, typer.Option()] = "blacklist",
) -> None:
    """Generate realistic order traffic with anomalies of every rule injected, and a manifest."""
    import time as _time

    import orjson

    from orderwatch.engine.catalog import parse_duration
    from orderwatch.simulate import SimConfig, Simulator, parse_mix, produce, write_file

    if (to_file is None) == (bootstrap is None):
        raise typer.BadParameter("give exactly one of --to-file and --bootstrap")
    try:
        config = SimConfig(
            seed=seed,
            orders=orders,
            start=_time.time()
            if demo and start is None
            else (
                _parse_until(start) or datetime.fromisoformat("2026-11-20T00:00:00+00:00")
            ).timestamp(),
            duration=parse_duration(duration),
            anomaly_rate=anomaly_rate,
            anomalies=anomalies,
            mix=parse_mix(mix),
            demo=demo,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    sim = Simulator(config)
    if to_file is not None:
        result = write_file(sim, to_file, rate)
    else:
        topics = {
            "order": topic_orders,
            "payment": topic_payments,
            "inventory": topic_inventory,
            "logistics": topic_logistics,
            "blacklist": topic_blacklist,
        }
        assert bootstrap is not None
        result = asyncio.run(produce(sim, bootstrap, rate, topics))
        if manifest is not None:
            manifest.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    typer.echo(
        f"{result['events']} events, {len(result['expected'])} expected exceptions, "
        f"{result['start']} .. {result['end']}",
        err=True,
    )


@app.command("sim-executor")
def sim_executor(
    bootstrap: Annotated[str, typer.Option(help="Kafka host:port")] = "127.0.0.1:9092",
    fail_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of actions to fail (breaker demo)")
    ] = 0.0,
) -> None:
    """Demo only: a pretend OMS/payment service answering order-actions (not the detector)."""
    from orderwatch.settings import Settings
    from orderwatch.sim_executor import run

    s = Settings()
    topics = {
        "actions": s.topic_actions,
        "results": s.topic_action_results,
        "orders": s.topic_orders,
        "payments": s.topic_payments,
    }
    asyncio.run(run(bootstrap, topics, fail_rate=fail_rate))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
