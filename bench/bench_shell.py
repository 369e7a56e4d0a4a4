"""The worker's shell alone (router, stage 2, engines, state writes) in one process: CPU seconds.

Why: ``bench_pipeline.py``'s ratio (worker / bare Faust) moves 0.4-1.0 between runs of the same
code on this shared machine, so a change worth 10 % of the worker's CPU cannot be seen in it. Here
the same day (``bench_pipeline``'s first ``--events`` events, five topics of 4 partitions) goes
through a ``Shell`` without Kafka: each input partition read 250 records a poll in turn, 500 a
router batch, the paused ones (``Shell.ahead``, watermark alignment) skipped, every envelope
processed at once, a watermark report and a sweep every 4 batches, the state written every
``--persist-every`` events (the worker writes it before each offset commit, every 10 s: ~50,000
events at its pace). The wall clock the shell measures idleness by advances 0.07 s a batch (~7,000
events/s), so the run is the same whatever the load. CPU seconds by ``time.process_time``.

    .venv/bin/python bench/bench_shell.py [--events 100000] [--persist-every 50000]

For an A/B against another tree: ``PYTHONPATH=<tree>/src:<tree> <tree>/.venv/bin/python
bench/bench_shell.py`` (its own venv: the editable install maps ``orderwatch.agents``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from orderwatch.agents.shell import WATERMARK_HEADER, ShardMessage, Shell, partition_for
from orderwatch.engine import Engine
from orderwatch.heap import tune_collector
from orderwatch.rulefiles import load_catalog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_pipeline import day_of_events
from tests.integration.harness import Topics

PARTITIONS = 4
POLL = 250
BATCH = 500
#: wall seconds a router batch takes at the worker's pace (~7,000 events/s)
BATCH_WALL = 0.07


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--persist-every", type=int, default=50_000)
    args = parser.parse_args()
    tune_collector()
    parts: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    for topic, key, value in day_of_events(args.events, Topics()):
        parts[(topic, partition_for(key, PARTITIONS))].append(value)
    inputs = sorted(parts)
    high = {tp: len(values) for tp, values in parts.items()}
    shard: list[ShardMessage] = []
    counts = {"exceptions": 0, "changelog": 0, "parks": 0}
    wall = [1.8e9]

    def send_shard(key: bytes, value: bytes, partition: int | None, headers: Any = None) -> None:
        stamp = dict(headers or {}).get(WATERMARK_HEADER)
        p = partition if partition is not None else partition_for(key, PARTITIONS)
        shard.append((key, value, p, wall[0], stamp))

    def send_exception(key: bytes, value: bytes, headers: Any) -> None:
        counts["exceptions"] += 1

    def send_changelog(partition: int, key: bytes, value: bytes | None) -> None:
        counts["changelog"] += 1

    class Counting(Engine):
        def _park(self, shard: Any, event: Any, occurred: float) -> None:
            counts["parks"] += 1
            super()._park(shard, event, occurred)

    catalog = load_catalog()
    shell = Shell(
        lambda: Counting(catalog, reorder=True),
        PARTITIONS,
        clock="event",
        send_shard=send_shard,
        send_dlq=lambda value, headers: None,
        send_exception=send_exception,
        send_changelog=send_changelog,
        wall=lambda: wall[0],
        watermark_exempt={topic for topic, _ in inputs if "blacklist" in topic},
    )
    shell.restore([], set(range(PARTITIONS)))
    pos = dict.fromkeys(inputs, 0)

    def highwater(topic: str, partition: int) -> int:
        return high[(topic, partition)]

    def position(topic: str, partition: int) -> int | None:
        at = pos[(topic, partition)]
        return at - 1 if at else None

    def drain() -> None:
        while shard:
            batch = shard[:]
            shard.clear()
            shell.process(batch)

    cpu: dict[str, float] = defaultdict(float)
    most = rounds = since = turn = 0
    start = time.process_time()
    while any(pos[tp] < high[tp] for tp in inputs):
        t0 = time.process_time()
        paused = shell.ahead(60.0)
        ready = {tp for tp in inputs if pos[tp] < high[tp] and tp not in paused}
        shell.look(inputs, highwater, position)
        for _ in range(BATCH // POLL):
            if not ready:
                break
            for k in range(len(inputs)):  # in turn, skipping paused and finished ones
                tp = inputs[(turn + k) % len(inputs)]
                if tp in ready:
                    break
            turn = (turn + k + 1) % len(inputs)
            chunk = parts[tp][pos[tp] : pos[tp] + POLL]
            for i, value in enumerate(chunk):
                shell.route(value, tp[0], tp[1], pos[tp] + i)
            pos[tp] += len(chunk)
            since += len(chunk)
        shell.flush()
        t1 = time.process_time()
        drain()
        rounds += 1
        wall[0] += BATCH_WALL
        if rounds % 4 == 0:
            shell.send_watermarks(inputs, highwater)
            drain()
            shell.sweep()
        t2 = time.process_time()
        most = max(most, shell.parked)
        if since >= args.persist_every:
            shell.persist()
            since = 0
        cpu["route"] += t1 - t0
        cpu["process"] += t2 - t1
        cpu["persist"] += time.process_time() - t2
    t3 = time.process_time()
    shell.caught_up_since = -1e18  # caught up long ago: the clock moves to the largest time read
    shell.send_watermarks(inputs, highwater)
    drain()
    shell.sweep()
    shell.persist()
    cpu["process"] += time.process_time() - t3
    total = time.process_time() - start
    print(
        f"cpu {total:.2f} s (route {cpu['route']:.2f}, stage 2 {cpu['process']:.2f}, "
        f"persist {cpu['persist']:.2f}); {args.events:,} events, "
        f"{shell.counters.processed:,} copies applied, {counts['parks']:,} parked in the engine, "
        f"most waiting {most:,}, {counts['exceptions']} exceptions, "
        f"{counts['changelog']:,} changelog writes"
    )


if __name__ == "__main__":
    main()
