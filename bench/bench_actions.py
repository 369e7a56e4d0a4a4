"""Size and cost of the remediation action state as actions accumulate (issue 16, CONTRACT 10).

Every action passes the partition that owns ``g:actions``. What matters there, per action, is
what the live worker pays: one atomic engine step (``engine.atomic``, which copies the shards the
step touches first) and, at each offset commit, serializing every shard the steps changed. This
bench feeds ``N`` request intents (one per order, 100k a day, types and modes mixed: dry_run,
auto, approval), each as the live action partition reads it, commits every ``--commit-every``
steps, and prints at checkpoints: microseconds per step, bytes written per commit, and the bytes
of the action state (``g:actions`` alone, and with the per-order action records, if any).

    .venv/bin/python bench/bench_actions.py [--actions 100000]

Absolute figures depend on the machine and its load; compare the columns within one run (the
per-step and per-commit cost should not grow with the number of actions held).
"""

from __future__ import annotations

import argparse
import time

import orjson

from orderwatch.engine import Engine, atomic, derived
from orderwatch.engine.state import ACTIONS
from orderwatch.rulefiles import load_catalog

DAY0 = 1_790_000_000.0
#: (type, mode) cycled over the actions: mostly reviews (dry_run), some automatic, some approval
MIX = [
    ("fulfillment.hold", "dry_run"),
    ("customer.notify", "dry_run"),
    ("order.resync_status", "auto"),
    ("carrier.claim", "dry_run"),
    ("payment.refund", "approval"),
]


def intent(i: int, at: float) -> derived.Intent:
    kind, mode = MIX[i % len(MIX)]
    ex = f"ex-{i:08d}"
    aid = f"act-{i:08d}"
    return derived.Intent.model_construct(
        type=derived.INTENT,
        event_id=f"{derived.INTENT}|request|{aid}",
        kind="request",
        exception_id=ex,
        order_id=f"O{i:08d}",
        occurred_ts=at,
        data={
            "action_id": aid,
            "type": kind,
            "exception_id": ex,
            "rule_id": "payment.duplicate",
            "order_id": f"O{i:08d}",
            "target": None,
            "params": {"reason": "bench"},
            "mode": mode,
            "approval_ttl": 86400.0,
            "max_per_hour": 100,
        },
    )


def action_bytes(engine: Engine) -> tuple[int, int]:
    """(bytes of ``g:actions`` serialized, bytes of every action shard serialized)."""
    main = total = 0
    for key, shard in list(engine.shards.items()):
        if key == ACTIONS or key.startswith(ACTIONS + "/"):
            size = len(orjson.dumps(shard.to_dict()))
            total += size
            if key == ACTIONS:
                main = size
    return main, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--actions", type=int, default=100_000)
    parser.add_argument("--commit-every", type=int, default=100)
    parser.add_argument("--per-day", type=int, default=100_000)
    args = parser.parse_args()
    engine = Engine(load_catalog(None))
    gap = 86400.0 / args.per_day
    checkpoints = sorted({1_000, 10_000, 50_000, args.actions} & set(range(1, args.actions + 1)))
    only = (ACTIONS,)
    window_time = 0.0
    window_steps = 0
    commit_bytes = 0
    commits = 0
    print(
        f"{'actions':>8} {'us/step':>9} {'bytes/commit':>13} {'g:actions bytes':>16} "
        f"{'all action state bytes':>23}"
    )
    for i in range(1, args.actions + 1):
        at = DAY0 + i * gap
        record = intent(i, at)
        t0 = time.perf_counter()
        atomic.step(engine, record, at, only, then=lambda out: out)  # type: ignore[arg-type]
        engine.take_actions()
        window_time += time.perf_counter() - t0
        window_steps += 1
        if i % args.commit_every == 0:
            t0 = time.perf_counter()
            written = sum(len(orjson.dumps(v)) for v in engine.take_dirty().values() if v)
            window_time += time.perf_counter() - t0
            commit_bytes += written
            commits += 1
        if i in checkpoints:
            main_bytes, total = action_bytes(engine)
            print(
                f"{i:>8} {1e6 * window_time / window_steps:>9.1f} "
                f"{commit_bytes // max(commits, 1):>13,} {main_bytes:>16,} {total:>23,}"
            )
            window_time, window_steps, commit_bytes, commits = 0.0, 0, 0, 0


if __name__ == "__main__":
    main()
