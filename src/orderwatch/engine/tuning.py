"""The engine's side of overrides and calendars, and of a new rule set read while it runs.

``engine.params`` says what a rule file means for given facts and times; this module asks it for
the engine's subjects (an order's kept facts, a stock key), caches the answers (a few distinct
combinations serve millions of orders), and swaps the rule set between batches: deadlines already
scheduled are re-derived with the new thresholds and escalation intervals (docs/contract.md,
"A new rule set").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from orderwatch.engine import orders, stock
from orderwatch.engine.catalog import Rule
from orderwatch.engine.inhibition import Inhibition
from orderwatch.engine.lifecycle import ESCALATION
from orderwatch.engine.params import (
    INF,
    Facts,
    WorkingHours,
    active_periods,
    advance,
    as_raised,
    calendar_names,
    resolve,
    scales_for,
)
from orderwatch.engine.state import OrderShard, Shard, StockShard

if TYPE_CHECKING:
    from orderwatch.engine.core import Engine

_NO_PERIODS: frozenset[str] = frozenset()
_NO_FACTS = Facts()
_CACHE_LIMIT = 50_000


class Tuner:
    """Per-subject rules for one engine: resolution, deadlines, and the swap of a rule set."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: the event time of what is being applied, or the due time of the deadline firing: the
        #: moment a ``period`` override is judged at for rules without a measured interval
        self.at = 0.0
        self._reset()
        engine.life.effective = self.effective

    def _reset(self) -> None:
        rules = self.engine.rules
        self.timeouts = frozenset(
            r for r in orders.TIMEOUTS if r in rules and not rules[r].tuning.trivial
        )
        self._resolved_cache: dict[tuple[Any, ...], Rule] = {}
        self._advance_cache: dict[tuple[Any, ...], float] = {}
        self._facts: dict[Any, Facts] = {}

    # --- resolution ------------------------------------------------------------------------------

    def facts_of(self, shard: Shard | None) -> Facts:
        if type(shard) is OrderShard:
            values = shard.facts
            if values is None:
                return _NO_FACTS
            values = tuple(values)  # a list when restored from the changelog
            found = self._facts.get(values)
            if found is None:
                found = Facts(values)
                if len(self._facts) < _CACHE_LIMIT:
                    self._facts[values] = found
            return found
        if type(shard) is StockShard:
            sku, _, warehouse = shard.key[2:].rpartition("/")
            return Facts(extra=(("sku", sku), ("warehouse_id", warehouse)))
        return _NO_FACTS

    def _resolved(self, shard: Shard | None, rule: Rule, anchor: float) -> Rule:
        facts = self.facts_of(shard)
        periods = rule.tuning.periods
        active = active_periods(periods, anchor) if periods else _NO_PERIODS
        key = (rule.rule_id, facts, active)
        hit = self._resolved_cache.get(key)
        if hit is None:
            hit = resolve(rule, facts, active)
            if len(self._resolved_cache) >= _CACHE_LIMIT:
                self._resolved_cache.clear()
            self._resolved_cache[key] = hit
        return hit

    def effective(self, shard: Shard | None, rule: Rule, at: float) -> Rule:
        """The rule as it applies to this shard's subject for a condition that became true at
        ``at``; its ``applied`` names the override, working hours and calendar periods used.

        An order timeout is judged at the start of its measured interval (its anchor), the
        moment its deadline was computed from, so the evidence says what the deadline used.
        (An open exception's later events use ``params.as_raised`` instead.)
        """
        tuning = rule.tuning
        if tuning.trivial:
            return rule
        rule_id = rule.rule_id
        anchor = at
        timeout = type(shard) is OrderShard and rule_id in orders.TIMEOUT_SET
        if timeout:
            assert isinstance(shard, OrderShard)
            anchor = orders.anchors(shard).get(rule_id, at)
        eff = self._resolved(shard, rule, anchor)
        if not timeout:
            return eff
        extra: tuple[tuple[str, str], ...] = ()
        if eff.hours is not None:
            extra += (("working_hours", eff.hours.name),)
        names = calendar_names(rule_id, tuning.periods, anchor, at)
        if names:
            extra += (("calendar", names),)
        return replace(eff, applied=eff.applied + extra) if extra else eff

    def deadline(self, shard: Shard, rule_id: str, anchor: float) -> float:
        """When an order timeout measured from ``anchor`` comes due for this subject."""
        engine = self.engine
        rule = engine.rules[rule_id]
        if rule.tuning.trivial:
            return anchor + engine.timeout_limits[rule_id]
        eff = self._resolved(shard, rule, anchor)
        p = eff.params
        threshold = float(p.grace if rule_id in orders.GRACE else p.threshold)
        scales = scales_for(rule_id, rule.tuning.periods)
        if eff.hours is None and not scales:
            return anchor + threshold
        return self._advance(anchor, threshold, eff.hours, scales)

    def _advance(
        self,
        anchor: float,
        threshold: float,
        hours: WorkingHours | None,
        scales: tuple[tuple[float, float, float], ...],
    ) -> float:
        key = (anchor, threshold, hours, scales)
        due = self._advance_cache.get(key)
        if due is None:
            due = advance(anchor, threshold, hours, scales)
            if len(self._advance_cache) >= _CACHE_LIMIT:
                self._advance_cache.clear()
            self._advance_cache[key] = due
        return due

    # --- a new rule set -----------------------------------------------------------------------

    def swap(self, rules: Mapping[str, Rule]) -> None:
        """Run ``rules`` from now on; deadlines already scheduled follow them.

        - Order timeouts (and ``inventory.sync_drift``'s persistence) are re-derived from each
          shard's state with the new thresholds: one walk over the shards held. A new deadline
          already passed fires at the next sweep (``event_time`` is that deadline).
        - An open exception keeps its id, event time, summary and evidence. Its escalation in
          progress keeps its start and takes the new ``escalate_after`` (none: it escalates no
          further; so does a rule switched off). Its later events carry the new severity,
          owner and playbook.
        - Windows and rate buckets already open keep the size they were opened with.
        """
        engine = self.engine
        old = engine.rules
        new = dict(rules)
        # only what a changed rule can move is re-derived: a walk over a million orders costs
        # seconds, and most changes touch one rule (measured: about 3 us per shard re-derived)
        escalating = {r for r in new if _escalation(old.get(r)) != _escalation(new[r])}
        timing = {r for r in orders.TIMEOUTS if _timing(old.get(r)) != _timing(new.get(r))}
        arming = any(
            new[r].enabled and not (old.get(r) is not None and old[r].enabled)
            for r in orders.TIMEOUTS
            if r in new
        )
        plans: list[tuple[Shard, str, str, float, float | None]] = []
        for shard in engine.shards.values() if escalating else ():
            if not shard.open or not shard.timers:
                continue
            for key, op in shard.open.items():
                name = ESCALATION + key
                due = shard.timers.get(name)
                rule = old.get(op.rule_id)
                if due is not None and rule is not None and op.rule_id in escalating:
                    was = as_raised(rule, op.values).escalate_after
                    plans.append((shard, op.rule_id, name, due, was))
        engine.rules = new
        engine.life.rules = new
        # v2 inhibition pairs: the new set's apply to what is raised or closed from now on
        engine.life.inhibition = Inhibition(new)
        # v2 remediation (section 10): the rules whose exceptions request actions
        engine.remediating = frozenset(r for r, rule in new.items() if rule.remediation)
        engine.timeout_limits = orders.timeout_limits(new)
        engine.enabled_timeouts = frozenset(r for r in orders.TIMEOUTS if engine.enabled(r))
        self._reset()
        for shard, rule_id, name, due, was in plans:
            rule = new.get(rule_id)
            still = shard.open.get(name[len(ESCALATION) :])
            if rule is None or still is None:
                continue
            now_every = as_raised(rule, still.values).escalate_after
            if now_every is None or not rule.enabled or was is None:
                engine.unschedule(shard, name)
            elif now_every != was:
                engine.schedule(shard, name, due - was + now_every)
        drift = stock.RULE in escalating or _timing(old.get(stock.RULE)) != _timing(
            new.get(stock.RULE)
        )
        if not (timing or arming or drift):
            return
        for shard in list(engine.shards.values()):
            kind = type(shard)
            if kind is OrderShard:
                assert isinstance(shard, OrderShard)
                if arming or any(name in timing for name in shard.timers):
                    orders._refresh(engine, shard)
            elif drift and kind is StockShard and stock.RULE in shard.timers:
                assert isinstance(shard, StockShard)
                if shard.drift_since is None or not engine.enabled(stock.RULE):
                    engine.unschedule(shard, stock.RULE)
                else:
                    persist = engine.params(stock.RULE, shard).persist_for
                    engine.schedule(shard, stock.RULE, shard.drift_since + persist)


def _timing(rule: Rule | None) -> Any:
    """What a rule's deadlines are computed from."""
    return None if rule is None else (rule.enabled, rule.params, rule.tuning, rule.hours)


def _escalation(rule: Rule | None) -> Any:
    """What a rule's escalations are computed from (an override may set escalate_after)."""
    return None if rule is None else (rule.enabled, rule.escalate_after, rule.tuning)


__all__ = ["INF", "Tuner"]
