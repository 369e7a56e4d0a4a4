"""``make bench``: every benchmark in one run, then one table of the figures.

    .venv/bin/python bench/bench_all.py [--engine-orders 20000] [--events 100000]
        [--restart-orders 1000] [--open-orders 1000000] [--markdown PATH]

Runs ``bench_engine.py`` and ``bench_pipeline.py`` as child processes (their own output is shown
as it comes), then the sweep and memory figures of ``bench_state.py`` in this process. Sizes are
smaller than the scripts' defaults so the whole run stays under ten minutes on two cores; each
line of the table names the command that reproduces it. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_state

HERE = Path(__file__).resolve().parent


def tee(cmd: list[str]) -> str:
    """Run a child, echo its output line by line, return all of it."""
    print(f"$ {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if proc.wait() != 0:
        raise SystemExit(f"{cmd[1]} exited with status {proc.returncode}")
    return "".join(lines)


def number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    return float(found.group(1).replace(",", "")) if found else float("nan")


def table(rows: list[tuple[str, str, str]]) -> str:
    """A Markdown table: figure, value, command."""
    out = ["| figure | value | reproduce with |", "|---|---:|---|"]
    out += [f"| {name} | {value} | `{cmd}` |" for name, value, cmd in rows]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine-orders", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=100_000, help="pipeline throughput events")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--restart-orders", type=int, default=1_000)
    parser.add_argument("--open-orders", type=int, default=1_000_000)
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    py = sys.executable
    started = time.monotonic()

    engine_cmd = [py, str(HERE / "bench_engine.py"), "--orders", str(args.engine_orders)]
    engine = tee(engine_cmd)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pipeline.json"
        pipeline_cmd = [
            py,
            str(HERE / "bench_pipeline.py"),
            "--events",
            str(args.events),
            "--latency-seconds",
            str(args.latency_seconds),
            "--restart-orders",
            str(args.restart_orders),
        ]
        tee([*pipeline_cmd, "--json", str(out)])
        p = json.loads(out.read_text())

    print(f"$ bench_state --large {args.open_orders} --small 10000", flush=True)
    s = bench_state.run(args.open_orders, 10_000)
    bench_state.report(s)

    def short(cmd: list[str]) -> str:
        return " ".join([".venv/bin/python", f"bench/{Path(cmd[1]).name}", *cmd[2:]])

    e_cmd, p_cmd = short(engine_cmd), short(pipeline_cmd)
    s_cmd = f".venv/bin/python bench/bench_state.py --large {args.open_orders} --small 10000"
    ms = 1e3
    day_eps = number(r"decode\+engine: ([\d,]+)", engine)
    alone_eps = number(r"engine alone: +([\d,]+)", engine)
    rows = [
        (
            "decode + engine, one core (events/s)",
            f"{day_eps:,.0f}",
            e_cmd,
        ),
        ("engine alone (events/s)", f"{alone_eps:,.0f}", e_cmd),
        (
            f"(a) aiokafka + decode, {p['events']:,} events (events/s)",
            f"{p['raw_eps']:,.0f}",
            p_cmd,
        ),
        ("(b) bare Faust agent + decode (events/s)", f"{p['faust_eps']:,.0f}", p_cmd),
        (
            "(b') the same with the worker's Faust and GC tweaks (events/s)",
            f"{p['faust_direct_eps']:,.0f}",
            p_cmd,
        ),
        (
            "(c) orderwatch worker (event-time clock), events read (events/s)",
            f"{p['worker_eps']:,.0f}",
            p_cmd,
        ),
        ("worker / bare Faust", f"{p['worker_over_faust']:.2f}", p_cmd),
        (
            "worker end to end, until the detector is done (events/s)",
            f"{p['worker_e2e_eps']:,.0f}",
            p_cmd,
        ),
        (
            "worker end to end / bare Faust",
            f"{p['worker_e2e_eps'] / p['faust_eps']:.2f}" if p["faust_eps"] else "n/a",
            p_cmd,
        ),
        (
            "worker end to end / bare Faust with the worker's tweaks",
            f"{p['worker_e2e_eps'] / p['faust_direct_eps']:.2f}"
            if p["faust_direct_eps"]
            else "n/a",
            p_cmd,
        ),
        ("exceptions the worker published on that day", f"{p['worker_exceptions']:,.0f}", p_cmd),
        (
            f"deadline -> exception p50 / p99 at {p['latency_rate']:,.0f} events/s (ms)",
            f"{p['timeout_p50'] * ms:,.0f} / {p['timeout_p99'] * ms:,.0f} (n={p['timeout_n']})",
            p_cmd,
        ),
        (
            f"event -> exception p50 / p99 at {p['latency_rate']:,.0f} events/s (ms)",
            f"{p['event_p50'] * ms:,.0f} / {p['event_p99'] * ms:,.0f} (n={p['event_n']})",
            p_cmd,
        ),
        (
            f"sweep, ~{s['due_per_sweep']:.0f} orders due, {s['large_orders']:,.0f} open (ms)",
            f"{s['large_sweep_s'] * ms:.2f}",
            s_cmd,
        ),
        (
            f"sweep, ~{s['due_per_sweep']:.0f} orders due, {s['small_orders']:,.0f} open (ms)",
            f"{s['small_sweep_s'] * ms:.2f}",
            s_cmd,
        ),
        ("sweep ratio large / small", f"{s['sweep_ratio']:.2f}", s_cmd),
        (
            "memory per open order (B, order shard + deadlines)",
            f"{s['bytes_per_open_order']:,.0f}",
            s_cmd,
        ),
        (
            f"restart to ready, {p['restart_orders']:,.0f} orders "
            f"({p['restart_restored_shards']:,.0f} shards) in the changelog (s)",
            f"{p['restart_restart_s']:.1f}",
            p_cmd,
        ),
        ("cold start to ready, empty changelog (s)", f"{p['restart_cold_start_s']:.1f}", p_cmd),
    ]
    text = table(rows)
    print(f"\nall figures ({time.monotonic() - started:.0f} s in all):\n{text}")
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
