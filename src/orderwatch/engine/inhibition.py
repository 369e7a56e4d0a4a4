"""Inhibition (CONTRACT section 9): one root cause pages once.

A rule names the rules that explain it (``inhibited_by``). Whenever an exception of an explaining
rule (the *inhibitor*) and one of the explained rule (the *target*) are both open for the same
order, the target is ``inhibited``: published once as such, never escalated, never alerted. It is
released (``raised`` again, next escalation ``escalate_after`` later) when its last open inhibitor
resolves while its own condition still holds, and resolved as usual if the condition clears first.

Every rule that may take part keeps its exceptions on the order's shard (subject = order_id; the
rule files are checked for that), so a pair is always judged within one shard, under one clock,
in one step: nothing crosses partitions, and replay and the live worker see the same order of
things.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from orderwatch.engine.catalog import Rule
from orderwatch.engine.state import Open, Shard

if TYPE_CHECKING:
    from orderwatch.engine.lifecycle import Lifecycle


class Inhibition:
    """The catalog's inhibition pairs, and what raising or closing an exception does to them."""

    def __init__(self, rules: Mapping[str, Rule]) -> None:
        #: target rule -> its inhibitors; inhibitor rule -> its targets (enabled rules only:
        #: a disabled rule raises nothing, so it explains nothing)
        self.inhibitors: dict[str, tuple[str, ...]] = {}
        self.targets: dict[str, tuple[str, ...]] = {}
        for rule in rules.values():
            explaining = tuple(
                i
                for i in rule.inhibited_by
                if i in rules and rules[i].enabled and i != rule.rule_id
            )
            if explaining:
                self.inhibitors[rule.rule_id] = explaining
                for i in explaining:
                    self.targets[i] = (*self.targets.get(i, ()), rule.rule_id)

    def inhibitor_of(self, shard: Shard, op: Open) -> Open | None:
        """The open exception that explains ``op`` (the first in ``inhibited_by`` order)."""
        explaining = self.inhibitors.get(op.rule_id)
        if not explaining or not shard.open or op.order_id is None:
            return None
        for rule_id in explaining:
            found = shard.open.get(f"{rule_id}|{op.order_id}")
            if found is not None:
                return found
        return None

    def opened(self, life: Lifecycle, shard: Shard, op: Open, now: float) -> None:
        """``op`` is open (raised or reopened): the open exceptions it explains are inhibited.

        A target acknowledged or snoozed loses that (and its timers): it is someone else's
        problem now, and released it comes back open.
        """
        targets = self.targets.get(op.rule_id)
        if not targets or op.order_id is None:
            return
        for rule_id in targets:
            key = f"{rule_id}|{op.order_id}"
            target = shard.open.get(key)
            if target is None or target.status == "inhibited":
                continue
            life.stop_timers(shard, key)
            target.status, target.inhibited_by = "inhibited", op.exception_id
            target.acked_by = target.snoozed_until = None
            life.emit(target, "inhibited", now)

    def closed(self, life: Lifecycle, shard: Shard, op: Open, now: float) -> None:
        """``op`` is resolved: each target it inhibited is released, unless another open
        inhibitor still explains it (then that one is named, without an event: the status
        does not change)."""
        targets = self.targets.get(op.rule_id)
        if not targets or op.order_id is None or not shard.open:
            return
        for rule_id in targets:
            target = shard.open.get(f"{rule_id}|{op.order_id}")
            if target is None or target.inhibited_by != op.exception_id:
                continue
            other = self.inhibitor_of(shard, target)
            if other is not None:
                target.inhibited_by = other.exception_id
                continue
            target.status, target.inhibited_by = "open", None
            life.emit(target, "raised", now)
            life.escalate_later(shard, target, now)


def check(rules: Mapping[str, tuple[str, ...]], per_order: frozenset[str]) -> list[str]:
    """Problems of a catalog's ``inhibited_by`` lists, as sentences; empty when sound.

    ``rules`` maps every rule_id to its ``inhibited_by``; ``per_order`` is the rules whose
    exceptions live on an order's shard (the only ones inhibition can pair).
    """
    problems = []
    for rule_id, explaining in rules.items():
        for other in explaining:
            if other == rule_id:
                problems.append(f"{rule_id} cannot be inhibited by itself")
            elif other not in rules:
                problems.append(f"{rule_id}: inhibited_by names an unknown rule {other!r}")
            elif rule_id not in per_order or other not in per_order:
                problems.append(
                    f"{rule_id}: inhibited_by {other}: inhibition pairs exceptions of one order, "
                    "and one of these rules is not about an order"
                )
    cycle = _cycle(rules)
    if cycle:
        problems.append("inhibited_by forms a cycle: " + " -> ".join(cycle))
    return problems


def _cycle(rules: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """One cycle of the "is inhibited by" graph (self-loops are reported on their own)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in rules.get(node, ()):
            if nxt == node or nxt not in rules:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(rules):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None
