"""The ``orderwatch`` command: worker, replay, broker, schemas, rules check (and more).

Each command is a thin adapter: it parses arguments and calls a module that does the work, so the
same work is reachable from tests without a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer

from orderwatch.errors import OrderwatchError, RuleFileError, RuleSetError

app = typer.Typer(
    help="orderwatch: a streaming detector of e-commerce order exceptions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="Validate and show rule files.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


def _add_console() -> None:
    """The console's commands live in their own package (orderwatch.console.cli)."""
    from orderwatch.console.cli import console_app

    app.add_typer(console_app, name="console")


_add_console()


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
    blacklist: Annotated[
        Path | None,
        typer.Option(help="write the blacklist entries of approved blacklist.suggest here (JSONL)"),
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
        blacklist_out = open(blacklist, "wb") if blacklist is not None else None  # noqa: SIM115
    except OSError as exc:
        typer.echo(f"orderwatch: cannot write {blacklist}: {exc.strerror}", err=True)
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
            blacklist=blacklist_out,
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
        if blacklist_out is not None:
            blacklist_out.close()
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
        for each in exc.errors if isinstance(exc, RuleSetError) else [exc]:
            typer.echo(f"error: {each}", err=True)
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
    console = Console(width=160)
    console.print(table)
    _print_tuning(console, catalog)
    typer.echo(f"rules version {catalog.version}")


def _print_tuning(console: Any, catalog: Any) -> None:
    """The overrides and calendar of a catalog, as ``rules check`` shows them."""
    from rich.table import Table

    from orderwatch.engine.catalog import format_duration

    table = Table(title="overrides (most specific match wins)")
    for col in ("rule_id", "line", "when", "sets"):
        table.add_column(col)
    for rule in catalog.values():
        for o in rule.tuning.overrides:
            sets = []
            if o.params is not None:
                base, mine = rule.params.model_dump(), o.params.model_dump()
                sets += [
                    f"{k}={format_duration(v) if k in _DURATION_PARAMS else v}"
                    for k, v in mine.items()
                    if base.get(k) != v
                ]
            sets += [f"{k}={v}" for k in ("severity", "owner") if (v := getattr(o, k))]
            if o.escalate_after != "keep":
                esc = o.escalate_after
                sets.append(f"escalate_after={format_duration(esc) if esc else 'never'}")
            if o.working_hours is not None:
                sets.append(f"working_hours={o.working_hours.name}")
            when = ", ".join(f"{f}={'|'.join(sorted(v))}" for f, v in o.when)
            table.add_row(rule.rule_id, str(o.line), when, ", ".join(sets))
    if table.row_count:
        console.print(table)
    cal = catalog.calendar
    for p in cal.periods:
        scale = ", ".join(f"{r} x{f:g}" for r, f in p.scale) or "(matched by overrides)"
        console.print(f"period {p.name}: {_iso(p.start)} .. {_iso(p.end)}  {scale}")
    for h in cal.working_hours.values():
        console.print(f"working hours {h.name}: {h.time_zone}, {len(h.days)} days a week")


def _iso(ts: float) -> str:
    from orderwatch.engine.lifecycle import iso

    return iso(ts)


@rules_app.command("diff")
def rules_diff(
    old_dir: Annotated[Path, typer.Argument(help="the rules directory running now")],
    new_dir: Annotated[Path, typer.Argument(help="the changed rules directory")],
    events: Annotated[str, typer.Option(help="JSONL file of input events (a day), or -")],
    until: Annotated[
        str | None, typer.Option(help="move the clock to this RFC 3339 time at the end")
    ] = None,
    resolutions: Annotated[
        Path | None,
        typer.Option(help="exception events with operators' resolutions (false positives)"),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the result as JSON here")
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="also write what-if.html into this directory")
    ] = None,
) -> None:
    """Replay the same events with both rule sets: what would be raised in addition, no longer,
    or with another severity or owner, per rule (and the known false positives avoided)."""
    from orderwatch.reports.whatif import render_text, run_diff, write_html

    until_at = _parse_until(until)
    try:
        stream: BinaryIO = sys.stdin.buffer if events == "-" else open(events, "rb")  # noqa: SIM115
        verdicts = open(resolutions, "rb") if resolutions is not None else None  # noqa: SIM115
    except OSError as exc:
        typer.echo(f"orderwatch: cannot read: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        result = run_diff(
            stream,
            old_dir,
            new_dir,
            until=until_at.timestamp() if until_at else None,
            resolutions=verdicts,
            err=sys.stderr,
        )
    except RuleFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
        if verdicts is not None:
            verdicts.close()
    typer.echo(render_text(result), nl=False)
    if json_out is not None:
        json_out.write_bytes(result.to_json() + b"\n")
    if html is not None:
        typer.echo(f"wrote {write_html(result, html)}", err=True)


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
    what_if: Annotated[
        Path | None,
        typer.Option(help="render a `rules diff --json` result as what-if.html instead"),
    ] = None,
    kpis: Annotated[
        Path | None, typer.Option(help="KPI records (replay --kpis, or order-kpis) to add")
    ] = None,
) -> None:
    """Weekly review of exceptions: counts, time to resolve, escalation; HTML plus CSV."""
    from orderwatch.reports.summary import run_report

    if what_if is not None:
        from orderwatch.reports.whatif import WhatIf, write_html

        try:
            page = write_html(WhatIf.from_json(what_if.read_bytes()), out)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            typer.echo(f"orderwatch: cannot read {what_if}: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {page}")
        return
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
        from orderwatch.reports.kpis import add_to_report

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
    demo: Annotated[bool, typer.Option(help="dated at sending; timeouts backdated")] = False,
    rate: Annotated[float, typer.Option(help="events per second (0: as fast as possible)")] = 0.0,
    manifest: Annotated[Path | None, typer.Option(help="manifest path with --bootstrap")] = None,
    topic_orders: Annotated[str, typer.Option()] = "orders",
    topic_payments: Annotated[str, typer.Option()] = "payment-callbacks",
    topic_inventory: Annotated[str, typer.Option()] = "inventory",
    topic_logistics: Annotated[str, typer.Option()] = "logistics",
    topic_blacklist: Annotated[str, typer.Option()] = "blacklist",
    operate_for: Annotated[
        float,
        typer.Option(
            help="with --bootstrap: also play an operator (ack, snooze, resolve) for N seconds, "
            "through the commands topic (topics from ORDERWATCH_* settings)"
        ),
    ] = 0.0,
) -> None:
    """Generate realistic order traffic with anomalies of every rule injected, and a manifest."""
    import time as _time

    import orjson

    from orderwatch.engine.catalog import parse_duration
    from orderwatch.simulation.traffic import SimConfig, Simulator, parse_mix, produce, write_file

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
        if operate_for > 0:
            result = asyncio.run(_produce_and_operate(sim, bootstrap, rate, topics, operate_for))
        else:
            result = asyncio.run(produce(sim, bootstrap, rate, topics))
        if manifest is not None:
            manifest.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    typer.echo(
        f"{result['events']} events, {len(result['expected'])} expected exceptions, "
        f"{result['start']} .. {result['end']}",
        err=True,
    )


async def _produce_and_operate(
    sim: Any, bootstrap: str, rate: float, topics: dict[str, str], seconds: float
) -> dict[str, Any]:
    """The traffic and the simulated operators beside it for ``seconds``."""
    from orderwatch.commands_client import Topics
    from orderwatch.settings import Settings
    from orderwatch.simulation.operators import run_operator
    from orderwatch.simulation.traffic import produce

    stop = asyncio.Event()
    operating = asyncio.create_task(run_operator(Topics.from_settings(Settings(), bootstrap), stop))
    started = asyncio.get_running_loop().time()
    result = await produce(sim, bootstrap, rate, topics)
    left = seconds - (asyncio.get_running_loop().time() - started)
    if left > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(operating), left)
    stop.set()
    operator = await operating
    typer.echo(f"operator sent {dict(operator.sent)}", err=True)
    return result


# --- operators' commands (CONTRACT section 8): thin adapters over orderwatch.commands_client ---

_ExceptionId = Annotated[str, typer.Argument(help="the exception's exception_id")]
_Note = Annotated[str | None, typer.Option(help="a note kept on the exception's event")]
_BOOTSTRAP_HELP = "Kafka host:port (default: $ORDERWATCH_BOOTSTRAP_SERVERS)"
_Bootstrap = Annotated[str | None, typer.Option(help=_BOOTSTRAP_HELP)]


@dataclass(frozen=True)
class _Sending:
    """How and as whom an operator command is sent: the options every one of them takes."""

    actor: str | None
    expected_status: str | None
    rule_id: str | None
    subject: str | None
    timeout: float
    command_id: str | None
    bootstrap: str | None
    as_json: bool


def _option(
    name: str, annotation: Any, default: Any, *decls: str, **info: Any
) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[annotation, typer.Option(*decls, **info)],
        default=default,
    )


#: The shared options, declared once (``_operator_command`` adds them to each command).
_SENDING = (
    _option(
        "actor", str | None, None,
        help="who sends it (default: $ORDERWATCH_ACTOR, else the login name)",
    ),
    _option(
        "expected_status", str | None, None,
        help="the status you last saw; the detector answers stale if it changed",
    ),
    _option(
        "rule_id", str | None, None,
        help="the exception's rule_id (default: looked up on the topic)",
    ),
    _option(
        "subject", str | None, None,
        help="the exception's subject (default: looked up on the topic)",
    ),
    _option("timeout", float, 30.0, help="seconds to wait for the reply (0: send and do not wait)"),
    _option(
        "command_id", str | None, None,
        help="the command's event_id: retry with the same id, effect once",
    ),
    _option("bootstrap", str | None, None, help=_BOOTSTRAP_HELP),
    _option("as_json", bool, False, "--json", help="print the reply as one JSON line"),
)  # fmt: skip


def _operator_command(fn: Callable[..., None]) -> Callable[..., None]:
    """Register ``fn(..., sending: _Sending)`` as a command taking its own parameters followed by
    the shared options; typer reads the signature built here, ``fn`` gets them as one value."""
    own = [
        p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "sending"
    ]
    names = [p.name for p in _SENDING]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> None:
        shared = {name: kwargs.pop(name) for name in names}
        fn(**kwargs, sending=_Sending(**shared))

    params = [*own, *_SENDING]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__  # typer must read the signature above, not fn's
    app.command()(command)
    return command


#: exit status when the detector rejected the command, and when no reply came in time
EXIT_REJECTED = 1
EXIT_TIMED_OUT = 3


def _send_command(
    kind: str, exception_id: str | None, fields: dict[str, object], sending: _Sending
) -> None:
    """Build, send, wait, print; the exit status says accepted (0), rejected or timed out.

    ``exception_id`` None: an approve or reject, whose exception is the one of its action (found
    on the actions topic).
    """
    import orjson

    from orderwatch.commands_client import (
        CommandsClientError,
        Topics,
        build_command,
        find_action,
        find_exception,
        resolve_actor,
        send_command,
    )
    from orderwatch.settings import Settings

    topics = Topics.from_settings(Settings(), sending.bootstrap)
    rule_id, subject = sending.rule_id, sending.subject
    try:
        who = resolve_actor(sending.actor)
        if exception_id is None:
            action_id = str(fields["action_id"])
            action = asyncio.run(find_action(topics, action_id))
            if action is None:
                typer.echo(f"orderwatch: no action {action_id} on {topics.actions}", err=True)
                raise typer.Exit(2)
            exception_id, rule_id = action.exception_id, rule_id or action.rule_id
            if action.status != "awaiting_approval":
                typer.echo(
                    f"orderwatch: action {action_id} is {action.status}, not awaiting approval "
                    "(sending anyway: the detector decides)",
                    err=True,
                )
        if rule_id is None or subject is None:
            found = asyncio.run(find_exception(topics, exception_id))
            if found is None:
                typer.echo(
                    f"orderwatch: no exception {exception_id} on {topics.exceptions}; "
                    "pass --rule-id and --subject to send anyway",
                    err=True,
                )
                raise typer.Exit(2)
            rule_id = rule_id or found.rule_id
            subject = subject or found.subject
        command = build_command(
            kind,
            exception_id,
            rule_id,
            subject,
            who,
            expected_status=sending.expected_status,
            fields=fields,
            command_id=sending.command_id,
        )
        timeout = sending.timeout
        reply = asyncio.run(send_command(topics, command, timeout if timeout > 0 else None))
    except CommandsClientError as exc:
        typer.echo(f"orderwatch: {exc}", err=True)
        raise typer.Exit(2) from None
    if timeout <= 0:
        typer.echo(f"sent {command['event_id']}")
        return
    if reply is None:
        typer.echo(
            f"orderwatch: no reply to {command['event_id']} within {timeout:g}s "
            f"on {topics.results} (is the worker running?)",
            err=True,
        )
        raise typer.Exit(EXIT_TIMED_OUT)
    what = f"action {fields['action_id']} of {exception_id}" if "action_id" in fields else None
    if sending.as_json:
        typer.echo(orjson.dumps(reply.model_dump(mode="json")).decode())
    elif reply.accepted and what:
        typer.echo(f"{kind}: accepted; {what} (its new status follows on {topics.actions})")
    elif reply.accepted:
        typer.echo(f"{kind}: accepted; {exception_id} is now {reply.status}")
    else:
        typer.echo(
            f"{kind}: rejected ({reply.reason}); {what or exception_id} "
            f"is {reply.status or 'unknown'}"
        )
    if not reply.accepted:
        raise typer.Exit(EXIT_REJECTED)


@_operator_command
def ack(exception_id: _ExceptionId, *, sending: _Sending) -> None:
    """Acknowledge an exception: someone is on it, escalation stops."""
    _send_command("acknowledge", exception_id, {}, sending)


@_operator_command
def unack(exception_id: _ExceptionId, *, sending: _Sending) -> None:
    """Unacknowledge: nobody is on it after all, escalation resumes."""
    _send_command("unacknowledge", exception_id, {}, sending)


@_operator_command
def assign(
    exception_id: _ExceptionId,
    assignee: Annotated[str, typer.Argument(help="who handles it: a user or team name")],
    *,
    sending: _Sending,
) -> None:
    """Assign an exception to someone (does not acknowledge it; ends a snooze)."""
    _send_command("assign", exception_id, {"assignee": assignee}, sending)


@_operator_command
def snooze(
    exception_id: _ExceptionId,
    until: Annotated[str | None, typer.Option(help="RFC 3339 end of the snooze")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="a duration: 90m, 1d2h")] = None,
    *,
    sending: _Sending,
) -> None:
    """Snooze an acknowledged exception: no escalation nor ack timeout until then."""
    if (until is None) == (for_ is None):
        raise typer.BadParameter("give exactly one of --until and --for")
    _send_command("snooze", exception_id, {"until": until, "for": for_}, sending)


@_operator_command
def comment(
    exception_id: _ExceptionId,
    note: Annotated[str, typer.Argument(help="the note (phone numbers are masked)")],
    *,
    sending: _Sending,
) -> None:
    """Add a note to an exception (in any status)."""
    _send_command("comment", exception_id, {"note": note}, sending)


@_operator_command
def resolve(
    exception_id: _ExceptionId,
    resolution: Annotated[str, typer.Argument(help="fixed, false_positive, duplicate or wont_fix")],
    note: _Note = None,
    *,
    sending: _Sending,
) -> None:
    """Resolve an exception by hand (resolved_by = operator)."""
    _send_command("resolve", exception_id, {"resolution": resolution, "note": note}, sending)


@_operator_command
def reopen(exception_id: _ExceptionId, note: _Note = None, *, sending: _Sending) -> None:
    """Reopen a resolved exception (its latest occurrence only)."""
    _send_command("reopen", exception_id, {"note": note}, sending)


_ActionId = Annotated[str, typer.Argument(help="the action's action_id (CONTRACT section 10)")]


@_operator_command
def approve(
    action_id: _ActionId,
    note: Annotated[
        str | None, typer.Option(help="why (phone numbers are masked before it is sent)")
    ] = None,
    *,
    sending: _Sending,
) -> None:
    """Approve a remediation action awaiting approval: it becomes requested (CONTRACT 10)."""
    from orderwatch.normalize import mask_text

    fields: dict[str, object] = {"action_id": action_id, "note": mask_text(note) if note else None}
    _send_command("approve", None, fields, sending)


@_operator_command
def reject(
    action_id: _ActionId,
    reason: Annotated[
        str, typer.Option(help="why not (sent as the command's note, phone numbers masked)")
    ],
    *,
    sending: _Sending,
) -> None:
    """Reject a remediation action awaiting approval: it becomes rejected (CONTRACT 10)."""
    from orderwatch.normalize import mask_text

    if not reason.strip():
        raise typer.BadParameter("--reason must say why")
    _send_command("reject", None, {"action_id": action_id, "note": mask_text(reason)}, sending)


@app.command()
def exceptions(
    owner: Annotated[
        list[str] | None, typer.Option(help="keep this owner team (repeatable)")
    ] = None,
    severity: Annotated[
        list[str] | None, typer.Option(help="keep this severity (repeatable)")
    ] = None,
    rule: Annotated[
        list[str] | None, typer.Option(help="keep this rule_id, or a prefix such as payment.")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", "--state", help="open, acknowledged, snoozed, inhibited, resolved"
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="resolved ones too")] = False,
    bootstrap: _Bootstrap = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object a line")] = False,
) -> None:
    """List open exceptions, read from the exceptions topic (any cluster, no worker needed)."""
    import orjson

    from orderwatch.commands_client import (
        CommandsClientError,
        Filters,
        Topics,
        fold,
        read_exceptions,
        row,
        select,
    )
    from orderwatch.settings import Settings

    topics = Topics.from_settings(Settings(), bootstrap)
    filters = Filters(
        owners=tuple(owner or ()),
        severities=tuple(severity or ()),
        rules=tuple(rule or ()),
        statuses=tuple(status or ()),
        include_resolved=all_,
    )
    try:
        kept = select(fold(asyncio.run(read_exceptions(topics))), filters)
    except CommandsClientError as exc:
        typer.echo(f"orderwatch: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        for event in kept:
            sys.stdout.buffer.write(orjson.dumps(row(event)) + b"\n")
        sys.stdout.flush()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(kept)} exceptions on {topics.exceptions}")
    for col in ("exception_id", "rule_id", "subject", "status", "sev", "lvl", "owner", "who"):
        table.add_column(col, overflow="fold")
    for event in kept:
        r = row(event)
        who = r["assignee"] or r["acknowledged_by"] or ""
        if r["snoozed_until"]:
            who = f"{who} until {r['snoozed_until']}".strip()
        table.add_row(
            r["exception_id"], r["rule_id"], r["subject"], r["status"], r["severity"],
            str(r["escalation_level"]), r["owner"], who,
        )  # fmt: skip
    Console(width=200).print(table)


@app.command("sim-executor")
def sim_executor(
    bootstrap: Annotated[str, typer.Option(help="Kafka host:port")] = "127.0.0.1:9092",
    fail_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of actions to fail (breaker demo)")
    ] = 0.0,
) -> None:
    """Demo only: a pretend OMS/payment service answering order-actions (not the detector)."""
    from orderwatch.settings import Settings
    from orderwatch.simulation.executor import run

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
