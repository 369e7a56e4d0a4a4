"""Action policies (CONTRACT section 10): which remediation a rule requests, and how safely.

A rule file may carry a ``remediation`` list; without one a rule takes the contract's default
actions (the table below), each in its type's default mode, which never executes anything:
``dry_run`` publishes the exact request as ``planned`` for review, ``approval`` waits for a person.
Only an operator who writes ``mode: auto`` lets orderwatch ask another system to act on its own.

What a policy may say is checked when the rule files are loaded (``orderwatch rules check`` names
the file and the line), so a typo in a mode or an unknown parameter never reaches the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orderwatch.engine.catalog import NOT_PER_ORDER, RULE_DEFS, parse_duration

Mode: TypeAlias = Literal["off", "dry_run", "auto", "approval"]
MODES: tuple[str, ...] = ("off", "dry_run", "auto", "approval")

#: Every action type of section 10 and its default mode.
DEFAULT_MODE: dict[str, Mode] = {
    "order.resync_status": "dry_run",
    "payment.refund": "approval",
    "fulfillment.hold": "dry_run",
    "fulfillment.release": "dry_run",  # not configured itself: it takes its hold's mode
    "customer.notify": "dry_run",
    "carrier.claim": "dry_run",
    "blacklist.suggest": "approval",
}
ACTION_TYPES: tuple[str, ...] = tuple(DEFAULT_MODE)

#: The contract's default actions per rule (section 10's "for (default rule)" column).
DEFAULT_ACTIONS: dict[str, tuple[str, ...]] = {
    "payment.paid_not_updated": ("order.resync_status",),
    "payment.duplicate": ("payment.refund",),
    "payment.after_cancel": ("payment.refund",),
    "fraud.blacklisted": ("fulfillment.hold",),
    "customer.invalid_address": ("fulfillment.hold",),
    "fraud.abnormal_quantity": ("fulfillment.hold",),
    "logistics.delivery_delayed": ("customer.notify",),
    "logistics.lost_or_damaged": ("customer.notify", "carrier.claim"),
    "inventory.oversold": ("customer.notify",),
    "fraud.frequent_refunds": ("blacklist.suggest",),
}
#: Default conditions: a hold for a bad address only while the parcel has not left.
DEFAULT_WHEN: dict[tuple[str, str], dict[str, Any]] = {
    ("customer.invalid_address", "fulfillment.hold"): {"not_shipped": True},
}

_PER_ORDER = frozenset(r for r in RULE_DEFS if r not in NOT_PER_ORDER)
#: Which rules an action type can serve: what it needs must be in the exception or its order.
ALLOWED_RULES: dict[str, frozenset[str]] = {
    # the succeeded payment whose status update is missing
    "order.resync_status": frozenset({"payment.paid_not_updated"}),
    # the payments to refund: the duplicates but the earliest, the one after the cancel
    "payment.refund": frozenset({"payment.duplicate", "payment.after_cancel"}),
    "fulfillment.hold": _PER_ORDER,
    "customer.notify": _PER_ORDER,
    # the carrier and tracking number of the parcel
    "carrier.claim": frozenset({"logistics.lost_or_damaged", "logistics.rejected"}),
    # the customer whose behaviour it is
    "blacklist.suggest": frozenset(
        {
            "fraud.frequent_refunds",
            "logistics.repeated_rejections",
            "fraud.new_account_burst",
            "fraud.blacklisted",
        }
    ),
}
#: Parameters an operator may set per type, with their defaults (others come from the exception).
PARAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "fulfillment.hold": {"reason": None},  # None: the rule_id
    "customer.notify": {"template": None, "locale": "zh-CN", "coupon": None},
}
DEFAULT_APPROVAL_TTL = 24 * 3600.0
DEFAULT_MAX_PER_HOUR = 100


class When(BaseModel):
    """Conditions an action is requested under; one that does not hold requests nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: refunds only: the payment's amount is at most this (a decimal string)
    max_amount: Decimal | None = None
    #: only while the order has not shipped (a hold after the label is printed is too late)
    not_shipped: bool = False

    @field_validator("max_amount", mode="before")
    @classmethod
    def _money(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError('an amount is a decimal string, e.g. "200.00"')
        return value


class PolicyFile(BaseModel):
    """One entry of a rule file's ``remediation`` list."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[
        "order.resync_status",
        "payment.refund",
        "fulfillment.hold",
        "customer.notify",
        "carrier.claim",
        "blacklist.suggest",
    ]
    mode: Mode | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    when: When = Field(default_factory=When)
    approval_ttl: float | None = None
    max_per_hour: int = Field(default=DEFAULT_MAX_PER_HOUR, ge=1)

    @field_validator("approval_ttl", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return None if value is None else parse_duration(value)


@dataclass(frozen=True, slots=True)
class ActionPolicy:
    """One action a rule requests, as the engine runs it."""

    type: str
    mode: Mode
    params: dict[str, Any] = field(default_factory=dict)
    max_amount: Decimal | None = None
    not_shipped: bool = False
    approval_ttl: float = DEFAULT_APPROVAL_TTL
    max_per_hour: int = DEFAULT_MAX_PER_HOUR


def problem(rule_id: str, spec: PolicyFile) -> tuple[str, str] | None:
    """``(field, message)`` of the first thing wrong with a policy for ``rule_id``, or None."""
    allowed = ALLOWED_RULES[spec.type]
    if rule_id not in allowed:
        return "type", f"{spec.type} cannot serve {rule_id}: it needs {_needs(spec.type)}"
    known = PARAM_DEFAULTS.get(spec.type, {})
    for name in spec.params:
        if name not in known:
            return "params", (
                f"{spec.type} takes no parameter {name!r}"
                + (
                    f" (it takes: {', '.join(known)})"
                    if known
                    else " (its parameters come from the exception)"
                )
            )
    if spec.when.max_amount is not None and spec.type != "payment.refund":
        return "when", "max_amount applies to payment.refund only"
    return None


def _needs(kind: str) -> str:
    return {
        "order.resync_status": "a succeeded payment whose status update is missing",
        "payment.refund": "a payment to refund",
        "carrier.claim": "a parcel's carrier and tracking number",
        "blacklist.suggest": "a customer to suggest",
    }.get(kind, "an order")


def build(rule_id: str, spec: PolicyFile) -> ActionPolicy:
    params = {**PARAM_DEFAULTS.get(spec.type, {}), **spec.params}
    return ActionPolicy(
        type=spec.type,
        mode=spec.mode or DEFAULT_MODE[spec.type],
        params=params,
        max_amount=spec.when.max_amount,
        not_shipped=spec.when.not_shipped,
        approval_ttl=spec.approval_ttl if spec.approval_ttl is not None else DEFAULT_APPROVAL_TTL,
        max_per_hour=spec.max_per_hour,
    )


def defaults(rule_id: str) -> tuple[ActionPolicy, ...]:
    """The contract's default actions of a rule whose file has no ``remediation``."""
    out = []
    for kind in DEFAULT_ACTIONS.get(rule_id, ()):
        when = DEFAULT_WHEN.get((rule_id, kind), {})
        out.append(build(rule_id, PolicyFile(type=kind, when=When(**when))))
    return tuple(out)
