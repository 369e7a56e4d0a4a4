"""``inventory.sync_drift``: two systems disagree on a sku's stock for longer than a grace period.

Kept per sku and warehouse. A short disagreement is normal (the systems sync every few minutes), so
the rule only fires when the latest snapshots still differ ``persist_for`` after they started to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orderwatch.engine.catalog import format_duration
from orderwatch.engine.lifecycle import iso
from orderwatch.engine.state import StockShard
from orderwatch.events.inbound import InboundEvent, InventorySnapshot

if TYPE_CHECKING:
    from orderwatch.engine.core import Engine

RULE = "inventory.sync_drift"


def _drift(ctx: Engine, s: StockShard) -> tuple[bool, dict[str, Any]]:
    """Whether the latest snapshots differ beyond max(A, P × the larger), with the figures."""
    if len(s.latest) < 2:
        return False, {}
    params = ctx.params(RULE)
    hi_src = max(s.latest, key=lambda k: (s.latest[k][0], k))
    lo_src = min(s.latest, key=lambda k: (s.latest[k][0], k))
    hi, lo = s.latest[hi_src][0], s.latest[lo_src][0]
    bound = max(float(params.min_difference), params.min_ratio * max(abs(hi), abs(lo)))
    values = {
        "sources": ", ".join(f"{src}={s.latest[src][0]}" for src in sorted(s.latest)),
        "difference": hi - lo,
        "allowed_difference": f"{bound:g}",
        "persist_for": format_duration(params.persist_for),
    }
    return hi - lo > bound, values


def apply(ctx: Engine, s: StockShard, ev: InboundEvent, now: float) -> None:
    if not isinstance(ev, InventorySnapshot):
        return
    at = ev.occurred_at.timestamp()
    known = s.latest.get(ev.source)
    if known is not None and (at, ev.event_id) <= (known[1], known[2]):
        return
    s.latest[ev.source] = [ev.available, at, ev.event_id]
    drifting, values = _drift(ctx, s)
    subject = s.key[2:]
    if drifting:
        if s.drift_since is None:
            s.drift_since = max(v[1] for v in s.latest.values())
        s.drift_eids = [v[2] for v in sorted(s.latest.values(), key=lambda v: (v[1], v[2]))]
        if f"{RULE}|{subject}" not in s.open and ctx.enabled(RULE):
            ctx.schedule(s, RULE, s.drift_since + ctx.params(RULE).persist_for)
    else:
        s.drift_since = None
        s.drift_eids = []
        ctx.unschedule(s, RULE)
        ctx.life.resolve(s, RULE, subject, now, [ev.event_id], values)


def on_deadline(ctx: Engine, s: StockShard, name: str, due: float, now: float) -> None:
    drifting, values = _drift(ctx, s)
    if not drifting or s.drift_since is None:
        return
    sku, _, warehouse = s.key[2:].rpartition("/")
    values["drift_since"] = iso(s.drift_since)
    ctx.life.raise_(
        s,
        RULE,
        s.key[2:],
        iso(s.drift_since),
        due,
        now,
        list(s.drift_eids),
        values,
        sku=sku,
        warehouse_id=warehouse,
    )
