"""``bench/bench_decode.py`` on a tiny file: its code paths run and its figures are sane.

Not a test of speed (nothing here looks at a time), only that the decode bench keeps working
between the runs that use it; its A/B mode is the same child run twice, on two trees.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
from pathlib import Path

import orjson

from tests.unit.test_codec_fuzz import SEEDS

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_decode.py"


def test_the_decode_bench_gives_a_rate_and_a_figure_per_type(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_decode", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_decode"] = bench
    spec.loader.exec_module(bench)
    day = tmp_path / "day.jsonl"
    day.write_bytes(b"".join(orjson.dumps(seed) + b"\n" for seed in SEEDS) * 40)
    bench.MIN_PER_TYPE = 20
    thresholds = gc.get_threshold()
    try:
        figures = bench.child(day, limit=0, rounds=1, engine=True)
    finally:  # the bench sets the worker's collector thresholds for its process
        gc.set_threshold(*thresholds)
    assert figures["lines"] == 40 * len(SEEDS)
    assert figures["decode_per_s"] > 0 and figures["engine_per_s"] > 0
    assert set(figures["us"]) == {seed["type"] for seed in SEEDS}
    assert all(us > 0 for us in figures["us"].values())
