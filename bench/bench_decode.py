"""Decode speed of inbound events, alone or A/B against another tree's code, per event type.

Why its own bench: decode is a third to a half of a worker's CPU per event, and its cost moves
with pydantic-core's schema (a Python validator called per field, a constraint, the union) in
ways a decode+engine figure hides under the engine's. Absolute figures on a shared machine are
noise; the A/B mode runs both trees as child processes, interleaved (ABBA), and prints ratios.
Times are the thread's CPU time (``time.thread_time``), not the wall clock: on a machine shared
with other jobs, the time this process waits for a core is theirs, not the decoder's.

    .venv/bin/python bench/bench_decode.py FILE [--lines 200000] [--rounds 3]
    .venv/bin/python bench/bench_decode.py FILE --old-src /tmp/dec-old/src [--rounds 4] [--engine]
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        .venv/bin/python bench/bench_decode.py FILE --once --lines 30000 [--skip] [--engine]

FILE is a day of events, one JSON per line (``bench/bench_engine.py --keep FILE`` writes one).
``--old-src`` is the ``src`` of another tree (``git archive REV src rules | tar -x -C DIR``);
this tree's own ``src`` is the other side. ``--engine`` adds a decode+engine pass over the whole
file per child (as ``orderwatch replay`` runs it, minus the output). Both sides run with the
worker's collector thresholds (``orderwatch.heap.THRESHOLDS``, copied here so an old tree
without them is measured the same way). ``--once`` is for an instruction count: the
difference of the counts with and without ``--skip``, over ``--lines``, is instructions per event
(``PYTHONPATH=DIR/src`` for another tree).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

#: the worker's thresholds (``orderwatch.heap``), set by the bench so both sides match
THRESHOLDS = (50_000, 20, 100)
#: per-type figures for types with at least this many events in the sample (fewer is noise)
MIN_PER_TYPE = 1_000
SRC = Path(__file__).resolve().parents[1] / "src"
_clock = time.thread_time


def read_lines(path: Path, limit: int) -> list[bytes]:
    out: list[bytes] = []
    with path.open("rb") as f:
        for line in f:
            out.append(line)
            if limit and len(out) >= limit:
                break
    return out


def event_type(line: bytes) -> str:
    kind = json.loads(line).get("type")
    return kind if isinstance(kind, str) else "?"


def child(path: Path, limit: int, rounds: int, engine: bool) -> dict[str, Any]:
    """Figures of the code on ``sys.path``: the best of ``rounds`` passes each."""
    from orderwatch.events.codec import decode_event

    gc.set_threshold(*THRESHOLDS)
    lines = read_lines(path, limit)
    by_type: dict[str, list[bytes]] = defaultdict(list)
    for line in lines:
        by_type[event_type(line)].append(line)
    best: dict[str, float] = defaultdict(lambda: float("inf"))
    for _ in range(rounds):
        started = _clock()
        for line in lines:
            decode_event(line)
        best["decode_all"] = min(best["decode_all"], _clock() - started)
        for kind, group in by_type.items():
            if len(group) < MIN_PER_TYPE:
                continue
            started = _clock()
            for line in group:
                decode_event(line)
            elapsed = (_clock() - started) / len(group)
            best[kind] = min(best[kind], elapsed)
    figures: dict[str, Any] = {
        "decode_per_s": len(lines) / best.pop("decode_all"),
        "us": {kind: round(t * 1e6, 3) for kind, t in best.items()},
        "lines": len(lines),
    }
    if engine:
        del lines, by_type
        figures["engine_per_s"] = decode_engine(path)
    return figures


def decode_engine(path: Path) -> float:
    """Events/s of decode + engine over the whole file, one pass (state grows through it)."""
    from orderwatch.engine import Engine, ReplayClock
    from orderwatch.events.codec import decode_event
    from orderwatch.rulefiles import load_catalog

    gc.collect()
    try:
        engine = Engine(load_catalog(), track_dirty=False)
    except TypeError:  # an older engine without the option
        engine = Engine(load_catalog())
    clock = ReplayClock()
    step = engine.step
    events = 0
    started = _clock()
    with path.open("rb") as f:
        for line in f:
            event = decode_event(line)
            step(event, clock.observe(event.occurred_ts))
            events += 1
    engine.sweep(clock.finish(None))
    return events / (_clock() - started)


def once(path: Path, limit: int, engine: bool, skip: bool) -> None:
    """Read the first ``limit`` lines, then decode each once (and step an engine with it), or
    not at all with ``skip``: run both under ``valgrind --tool=cachegrind``, the difference of
    their instruction counts over ``limit`` is the instructions per event, which the machine's
    load does not move."""
    from orderwatch.engine import Engine, ReplayClock
    from orderwatch.events.codec import decode_event
    from orderwatch.rulefiles import load_catalog

    gc.set_threshold(*THRESHOLDS)
    lines = read_lines(path, limit)
    if not engine:
        for line in [] if skip else lines:
            decode_event(line)
        return
    try:
        machine = Engine(load_catalog(), track_dirty=False)
    except TypeError:  # an older engine without the option
        machine = Engine(load_catalog())
    clock = ReplayClock()
    for line in [] if skip else lines:
        event = decode_event(line)
        machine.step(event, clock.observe(event.occurred_ts))


def run_child(src: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(src))
    cmd = [sys.executable, __file__, str(args.file), "--child", "--lines", str(args.lines)]
    cmd += ["--rounds", str(args.inner)] + (["--engine"] if args.engine else [])
    # the old tree's rule files: rulefiles finds them next to its src
    done = subprocess.run(cmd, env=env, cwd=src.parent, capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def ab(args: argparse.Namespace) -> None:
    sides = {"old": Path(args.old_src).resolve(), "new": SRC}
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for r in range(args.rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        for side in order:
            figures = run_child(sides[side], args)
            runs[side].append(figures)
            extra = f" decode+engine {figures['engine_per_s']:,.0f}/s" if args.engine else ""
            print(f"round {r + 1} {side}: decode {figures['decode_per_s']:,.0f}/s{extra}")
    print(f"\n{runs['new'][0]['lines']} lines, {args.rounds} rounds, median (best)")
    rows = [("decode events/s", "decode_per_s")]
    if args.engine:
        rows.append(("decode+engine events/s", "engine_per_s"))
    for label, key in rows:
        old = [f[key] for f in runs["old"]]
        new = [f[key] for f in runs["new"]]
        ratio = statistics.median(new) / statistics.median(old)
        print(
            f"{label:24s} old {statistics.median(old):>9,.0f} ({max(old):,.0f})"
            f"  new {statistics.median(new):>9,.0f} ({max(new):,.0f})"
            f"  new/old {ratio:.3f} ({max(new) / max(old):.3f})"
        )
    print(f"\n{'us per decode':28s}{'old':>8s}{'new':>8s}{'new/old':>9s}")
    kinds = sorted(runs["new"][0]["us"], key=lambda k: runs["new"][0]["us"][k])
    for kind in kinds:
        old_us = min(f["us"].get(kind, float("nan")) for f in runs["old"])
        new_us = min(f["us"][kind] for f in runs["new"])
        print(f"{kind:28s}{old_us:8.2f}{new_us:8.2f}{new_us / old_us:9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--lines", type=int, default=200_000, help="decode the first N (0: all)")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (or passes alone)")
    parser.add_argument("--inner", type=int, default=3, help="passes per child in A/B mode")
    parser.add_argument("--old-src", help="the other tree's src: run A/B, interleaved")
    parser.add_argument("--engine", action="store_true", help="also decode+engine, whole file")
    parser.add_argument("--once", action="store_true", help="decode --lines once, no figures")
    parser.add_argument("--skip", action="store_true", help="with --once: read, decode none")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        once(args.file, args.lines, args.engine, args.skip)
        return
    if args.old_src:
        ab(args)
        return
    figures = child(args.file, args.lines, args.rounds, args.engine)
    if args.child:
        print(json.dumps(figures))
        return
    print(f"decode {figures['decode_per_s']:,.0f}/s over {figures['lines']} lines")
    if args.engine:
        print(f"decode+engine {figures['engine_per_s']:,.0f}/s")
    for kind, us in sorted(figures["us"].items(), key=lambda kv: kv[1]):
        print(f"{kind:28s}{us:8.2f} us")


if __name__ == "__main__":
    main()
