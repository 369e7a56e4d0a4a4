"""The benchmark scripts' code paths on tiny inputs: they run, and their figures are sane.

Benchmarks are not tests: nothing here looks at a time. This only keeps ``make bench`` from
breaking silently between two runs (it needs a broker and minutes, so CI does not run it).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from datetime import datetime
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from orderwatch.events.codec import decode_event
from orderwatch.simulation.traffic import AGO, SimConfig, Simulator, write_file
from tests.integration.harness import Topics

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_sweep_benchmark_fires_the_due_orders_on_tiny_engines() -> None:
    figures = load("bench_state").run(large=1_000, small=300, due=50, sweeps=2)
    assert figures["exceptions_per_sweep"] > 0
    assert figures["large_orders"] == 1_000 and figures["small_orders"] == 300
    assert figures["large_sweep_s"] > 0 and figures["small_sweep_s"] > 0


def test_pipeline_traffic_is_valid_and_routed_to_the_run_topics() -> None:
    bench = load("bench_pipeline")
    topics = Topics(prefix="smoke")
    records = bench.day_of_events(200, topics)
    assert len(records) == 200
    for topic, key, value in records:
        assert topic.startswith("smoke-") and key
        decode_event(value)


def test_paced_events_are_dated_now_minus_their_backdating() -> None:
    bench = load("bench_pipeline")
    sim = Simulator(SimConfig(seed=3, orders=40, demo=True, anomaly_rate=0.5))
    backdated = next(e for e in sim.events() if AGO in e)
    ago = backdated[AGO]
    event = orjson.loads(bench.stamp_now(backdated))
    at = datetime.fromisoformat(event["occurred_at"]).timestamp()
    assert abs(at - (time.time() - ago)) < 5
    decode_event(orjson.dumps(event))


def test_percentiles_and_spans() -> None:
    bench = load("bench_pipeline")
    assert bench.pct([1.0], 99) == 1.0
    assert bench.pct([float(i) for i in range(101)], 50) == 50.0
    span = bench.Span()
    span.see(0, 1.0, 1.0)
    span.see(10, 2.0, 2.5)
    span.see(10, 3.0, 4.0)
    assert span.events == 20 and span.rate == 10.0


def test_console_benchmark_serves_every_queue_variant_from_a_small_projection() -> None:
    """The script as ``make bench-console`` runs it, in its own process (its server and event
    loop leave nothing behind in this one)."""
    import subprocess

    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_console.py"),
            "--open",
            "300",
            "--requests",
            "2",
            "--clicks",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "300 exception events applied" in done.stdout
    assert "text search" in done.stdout and "overview" in done.stdout
    assert "worst queue server p95" in done.stdout


def test_state_sizes_measure_open_and_finished_orders() -> None:
    sizes = load("state_sizes").measure(300)
    assert sizes["finished"]["count"] > 0
    for kind in sizes.values():
        assert 0 < kind["zlib"] < kind["json"] < kind["ram"]


def test_the_store_bench_seeds_orders_of_the_engines_own_format() -> None:
    bench_store = load("bench_store")
    items = list(bench_store.seeded_orders(3, overdue_id=3))
    assert [key for key, _ in items] == [f"o:SB{i:010d}" for i in range(4)]
    first = orjson.loads(items[0][1])
    overdue = orjson.loads(items[-1][1])
    assert "payment.paid_not_updated" in first["dl"]
    assert overdue["dl"]["payment.paid_not_updated"] < time.time() < first["dl"]["evict"]
    assert first["key"] == "o:SB0000000000" and "ORDX" not in items[0][1].decode()


def test_action_state_benchmark_runs_and_keeps_g_actions_small(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = load("bench_actions")
    sys.argv = ["bench_actions.py", "--actions", "1000", "--commit-every", "50"]
    try:
        bench.main()
    finally:
        sys.argv = sys.argv[:1]
    out = capsys.readouterr().out
    [row] = [line.split() for line in out.splitlines() if line.strip().startswith("1000")]
    # actions, us/step, bytes/commit, g:actions bytes, all action state bytes
    assert int(row[3].replace(",", "")) < 5_000 < int(row[4].replace(",", ""))


def test_kpi_size_benchmark_measures_the_hours_kpi_shards(tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl"
    write_file(Simulator(SimConfig(seed=1, orders=300)), path)
    peak = load("bench_kpi_size").measure(path, every=500)
    assert peak["events"] > 0 and peak["items"] > 0 and peak["key"].startswith("g:kpis/")
    assert 0 < peak["bytes"] < peak["total_bytes"]  # several hours' shards at once
    assert 0 < peak["pay_kpi_orders"] <= peak["orders"] and peak["pay_kpi_json"] > 0
