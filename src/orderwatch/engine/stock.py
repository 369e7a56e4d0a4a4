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


def _bound(ctx: Engine, s: StockShard) -> tuple[float, float, float]:
    """The highest and lowest latest snapshot, and the difference allowed between them."""
    params = ctx.params(RULE, s)
    figures = [v[0] for v in s.latest.values()]
    hi, lo = max(figures), min(figures)
    return hi, lo, max(float(params.min_difference), params.min_ratio * max(abs(hi), abs(lo)))


def _drifting(ctx: Engine, s: StockShard) -> bool:
    """Whether the latest snapshots differ beyond max(A, P × the larger).

    ``_bound``'s arithmetic, inline: it runs for every snapshot, the most frequent input."""
    latest = s.latest
    if len(latest) < 2:
        return False
    figures: list[int] = [v[0] for v in latest.values()]
    hi, lo = max(figures), min(figures)
    if hi == lo:  # agreeing figures (most snapshots) exceed no bound (both parameters >= 0)
        return False
    params = ctx.params(RULE, s)
    bound: float = max(float(params.min_difference), params.min_ratio * max(abs(hi), abs(lo)))
    return hi - lo > bound


def _values(ctx: Engine, s: StockShard) -> dict[str, Any]:
    """The figures behind a raise or a resolve; built only when one is emitted."""
    if len(s.latest) < 2:
        return {}
    hi, lo, bound = _bound(ctx, s)
    return {
        "sources": ", ".join(f"{src}={s.latest[src][0]}" for src in sorted(s.latest)),
        "difference": hi - lo,
        "allowed_difference": f"{bound:g}",
        "persist_for": format_duration(ctx.params(RULE, s).persist_for),
    }


def apply(ctx: Engine, s: StockShard, ev: InboundEvent, now: float) -> None:
    if type(ev) is not InventorySnapshot:  # exact type: the event classes are leaves
        return
    # the fields from the model's ``__dict__``, not through pydantic's ``__getattr__`` hook
    # (``orders._fields``): a snapshot is a quarter of the input
    d = ev.__dict__
    at = d.get("occurred_ts")
    if at is None:  # not read yet (``Engine.step`` reads it first)
        at = ev.occurred_ts
    source, eid = d["source"], d["event_id"]
    known = s.latest.get(source)
    if known is not None and (at, eid) <= (known[1], known[2]):
        return
    s.latest[source] = [d["available"], at, eid]
    if _drifting(ctx, s):
        if s.drift_since is None:
            s.drift_since = max(v[1] for v in s.latest.values())
        s.drift_eids = [v[2] for v in sorted(s.latest.values(), key=lambda v: (v[1], v[2]))]
        if f"{RULE}|{s.key[2:]}" not in s.open and ctx.enabled(RULE):
            ctx.schedule(s, RULE, s.drift_since + ctx.params(RULE, s).persist_for)
    else:
        s.drift_since = None
        if s.drift_eids:
            s.drift_eids = []
        if RULE in s.timers:
            ctx.unschedule(s, RULE)
        if s.open:
            subject = s.key[2:]
            if f"{RULE}|{subject}" in s.open:
                ctx.life.resolve(s, RULE, subject, now, [ev.event_id], _values(ctx, s))


def on_deadline(ctx: Engine, s: StockShard, name: str, due: float, now: float) -> None:
    if not _drifting(ctx, s) or s.drift_since is None:
        return
    values = _values(ctx, s)
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
