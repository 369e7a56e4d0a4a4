"""What a run generates (``SimConfig``), what it must produce (``Expected``), and ``--mix``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from orderwatch.engine.catalog import CONTRACT_RULES
from orderwatch.simulation.world import DAY, DEFAULT_START


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to generate. ``anomalies`` (exact count) wins over ``anomaly_rate`` when given."""

    seed: int = 1
    orders: int = 1000
    start: float = DEFAULT_START
    duration: float = DAY
    anomaly_rate: float = 0.02
    anomalies: int | None = None
    #: rule_id -> weight; None means every rule of the contract, equally.
    mix: Mapping[str, float] | None = None
    demo: bool = False
    #: demo: injected deadlines pass this many seconds after their trigger is emitted.
    demo_lead: float = 5.0


@dataclass(frozen=True, slots=True, order=True)
class Expected:
    """One exception an injected anomaly must produce; ``cause`` is the rule that was injected."""

    rule_id: str
    subject: str
    cause: str


def parse_mix(text: str | None) -> dict[str, float] | None:
    """``rule[=weight],...`` (a rule_id prefix such as ``payment.`` selects a family)."""
    if not text:
        return None
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        rules = [
            r for r in CONTRACT_RULES if r == name or (name.endswith(".") and r.startswith(name))
        ]
        if not rules:
            raise ValueError(f"unknown rule in mix: {name!r}")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"not a weight: {weight!r}") from None
        if w < 0:
            raise ValueError(f"negative weight for {name!r}")
        for rule in rules:
            mix[rule] = w
    return mix
