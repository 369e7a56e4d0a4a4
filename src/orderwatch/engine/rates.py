"""Global tumbling event-time windows: payment success rate and order-creation failure spikes.

Windows are aligned to the epoch (``floor(t / size) * size``) so every worker and every replay
cuts time the same way, and the subject (the window start) is the same everywhere. A window is
judged by the engine's own clock, not Faust's wall-clock window expiry, so replay and live agree.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from orderwatch.engine.catalog import format_duration
from orderwatch.engine.lifecycle import iso
from orderwatch.engine.state import RateShard
from orderwatch.events.inbound import (
    InboundEvent,
    OrderCreationFailed,
    PaymentFailed,
    PaymentSucceeded,
)

if TYPE_CHECKING:
    from orderwatch.engine.core import Engine

DROP = "payment.success_rate_drop"
SPIKE = "order.creation_failure_spike"


def _start(at: float, size: float) -> float:
    return math.floor(at / size) * size


def apply(ctx: Engine, s: RateShard, ev: InboundEvent, now: float) -> None:
    at = ev.occurred_ts
    if isinstance(ev, PaymentSucceeded | PaymentFailed):
        if not ctx.enabled(DROP):
            return
        size = ctx.params(DROP).window
        start = _start(at, size)
        if start + size <= s.pay_closed_until:
            return  # a straggler for a window already judged
        bucket = s.payments.get(start)
        if bucket is None:
            bucket = s.payments[start] = [set(), set()]
            ctx.schedule(s, f"pay|{start!r}", start + size)
        bucket[0 if isinstance(ev, PaymentSucceeded) else 1].add(ev.payment_id)
    elif isinstance(ev, OrderCreationFailed):
        if not ctx.enabled(SPIKE):
            return
        params = ctx.params(SPIKE)
        start = _start(at, params.window)
        if start + params.window <= s.fail_closed_until:
            return
        failures = s.failures.get(start)
        if failures is None:
            failures = s.failures[start] = set()
            ctx.schedule(s, f"fail|{start!r}", start + params.window)
        if ev.event_id in failures:
            return
        failures.add(ev.event_id)
        if len(failures) >= params.min_count:
            ctx.life.raise_(
                s,
                SPIKE,
                iso(start),
                "",
                at,
                now,
                [ev.event_id],
                {
                    "failures": len(failures),
                    "min_count": params.min_count,
                    "window_start": iso(start),
                    "window": format_duration(params.window),
                },
            )


def on_deadline(ctx: Engine, s: RateShard, name: str, due: float, now: float) -> None:
    kind, _, raw = name.partition("|")
    start = float(raw)
    if kind == "fail":
        s.failures.pop(start, None)
        s.fail_closed_until = max(s.fail_closed_until, due)
        return
    bucket = s.payments.pop(start, None)
    s.pay_closed_until = max(s.pay_closed_until, due)
    if bucket is None:
        return
    params = ctx.params(DROP)
    ok, failed = len(bucket[0]), len(bucket[1])
    attempts = ok + failed
    if attempts >= params.min_attempts and ok / attempts < params.min_success_ratio:
        ctx.life.raise_(
            s,
            DROP,
            iso(start),
            "",
            due,
            now,
            [],
            {
                "attempts": attempts,
                "succeeded": ok,
                "failed": failed,
                "success_ratio": f"{ok / attempts:.3f}",
                "min_success_ratio": f"{params.min_success_ratio:g}",
                "window_start": iso(start),
                "window": format_duration(params.window),
            },
        )
