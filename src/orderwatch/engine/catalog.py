"""What each rule of the default catalog (CONTRACT section 5) is, independent of its thresholds.

The thresholds, texts and playbooks live in ``rules/*.yaml`` (data an operator tunes); this module
holds what the code fixes: each rule's parameter schema with the contract's defaults, and whether
the rule has a resolving condition (only those escalate and resolve; the rest are notifications).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from orderwatch.engine.params import NO_TUNING, Tuning, WorkingHours
from orderwatch.events.exception import Category, Owner, Severity

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> float:
    """``10m``, ``72h``, ``7d``, ``1h30m`` to seconds; bare numbers are refused as ambiguous."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"a duration must be text like '10m', '72h' or '7d', not {value!r}")
    text = value.strip().replace(" ", "")
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {value!r} (use e.g. '30s', '10m', '72h', '7d', '1h30m')")
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for summaries people read."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Params(BaseModel):
    """Base of each rule's thresholds: unknown keys are errors, so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    pass


class Timeout(Params):
    threshold: Duration


class Grace(Params):
    grace: Duration = parse_duration("10m")


class PaidNotUpdated(Params):
    threshold: Duration = parse_duration("10m")


class FailedUnpaid(Params):
    threshold: Duration = parse_duration("30m")


class AmountMismatch(Params):
    tolerance: Decimal = Decimal("0.01")


class SuccessRateDrop(Params):
    window: Duration = parse_duration("5m")
    min_attempts: int = Field(default=20, ge=1)
    min_success_ratio: float = Field(default=0.8, gt=0, le=1)


class SyncDrift(Params):
    min_difference: int = Field(default=5, ge=0)
    min_ratio: float = Field(default=0.10, ge=0, le=1)
    persist_for: Duration = parse_duration("15m")


class NotShipped(Params):
    threshold: Duration = parse_duration("48h")


class TrackingStale(Params):
    threshold: Duration = parse_duration("72h")


class DeliveryDelayed(Params):
    threshold: Duration = parse_duration("7d")


class CreationFailureSpike(Params):
    window: Duration = parse_duration("5m")
    min_count: int = Field(default=10, ge=1)


class RemarkAttention(Params):
    keywords: list[str] = Field(
        default_factory=lambda: [
            "改地址",
            "修改地址",
            "加急",
            "发票",
            "不要",
            "换货",
            "change address",
            "urgent",
            "invoice",
            "do not",
        ],
        min_length=1,
    )


class AddressCluster(Params):
    window: Duration = parse_duration("24h")
    min_orders: int = Field(default=5, ge=1)
    min_customers: int = Field(default=3, ge=1)


class NewAccountBurst(Params):
    max_account_age: Duration = parse_duration("7d")
    window: Duration = parse_duration("1h")
    min_orders: int = Field(default=5, ge=1)


class AbnormalQuantity(Params):
    max_quantity: int = Field(default=20, ge=1)


class SharedPhone(Params):
    window: Duration = parse_duration("24h")
    min_customers: int = Field(default=3, ge=2)


class FrequentRefunds(Params):
    """v2 (section 11): N orders of one customer first refunded within D."""

    window: Duration = parse_duration("30d")
    min_orders: int = Field(default=3, ge=1)


class RepeatedRejections(Params):
    """v2 (section 11): N orders of one customer whose delivery was first rejected within D."""

    window: Duration = parse_duration("30d")
    min_orders: int = Field(default=2, ge=1)


class SourceSilent(Params):
    silence: Duration = parse_duration("15m")


@dataclass(frozen=True, slots=True)
class RuleDef:
    """The code-side facts of one rule; ``rules/<rule_id>.yaml`` supplies the rest."""

    rule_id: str
    category: Category
    severity: Severity
    owner: Owner
    params: type[Params]
    resolvable: bool


def _d(rule_id: str, cso: str, params: type[Params], resolvable: bool) -> RuleDef:
    category, severity, owner = cso.split("/")
    return RuleDef(rule_id, category, severity, owner, params, resolvable)  # type: ignore[arg-type]


#: The 28 rules of CONTRACT section 5 (plus the runtime's source-silence rule), in contract order.
RULE_DEFS: dict[str, RuleDef] = {
    d.rule_id: d
    for d in (
        _d("payment.paid_not_updated", "payment/high/tech", PaidNotUpdated, True),
        _d("payment.duplicate", "payment/high/payments", NoParams, True),
        _d("payment.amount_mismatch", "payment/high/payments", AmountMismatch, False),
        _d("payment.failed_unpaid", "payment/medium/customer_service", FailedUnpaid, True),
        _d("payment.after_cancel", "payment/high/payments", NoParams, True),
        _d("payment.orphan", "system/high/tech", Grace, True),
        _d("payment.success_rate_drop", "system/critical/tech", SuccessRateDrop, False),
        _d("inventory.oversold", "inventory/critical/warehouse", NoParams, True),
        _d("inventory.reservation_failed", "inventory/high/warehouse", NoParams, True),
        _d("inventory.sync_drift", "inventory/medium/warehouse", SyncDrift, True),
        _d("logistics.not_shipped", "logistics/medium/warehouse", NotShipped, True),
        _d("logistics.tracking_stale", "logistics/medium/logistics", TrackingStale, True),
        _d("logistics.delivery_delayed", "logistics/medium/logistics", DeliveryDelayed, True),
        _d("logistics.lost_or_damaged", "logistics/critical/logistics", NoParams, False),
        _d("logistics.rejected", "logistics/high/customer_service", NoParams, False),
        _d("logistics.orphan", "system/medium/tech", Grace, True),
        _d("order.shipped_unpaid", "fraud/critical/risk", Grace, True),
        _d("order.status_regression", "system/medium/tech", NoParams, False),
        _d("order.creation_failed", "system/low/tech", NoParams, False),
        _d("order.creation_failure_spike", "system/critical/tech", CreationFailureSpike, False),
        _d("customer.invalid_address", "customer_info/medium/customer_service", NoParams, True),
        _d("customer.invalid_phone", "customer_info/medium/customer_service", NoParams, True),
        _d("customer.unreachable", "customer_info/high/customer_service", NoParams, True),
        _d(
            "customer.remark_attention",
            "customer_info/low/customer_service",
            RemarkAttention,
            False,
        ),
        _d("fraud.address_cluster", "fraud/high/risk", AddressCluster, False),
        _d("fraud.new_account_burst", "fraud/high/risk", NewAccountBurst, False),
        _d("fraud.abnormal_quantity", "fraud/medium/risk", AbnormalQuantity, False),
        _d("fraud.shared_phone", "fraud/medium/risk", SharedPhone, False),
        _d("fraud.blacklisted", "fraud/critical/risk", NoParams, False),
        _d("fraud.frequent_refunds", "fraud/medium/risk", FrequentRefunds, False),
        _d("logistics.repeated_rejections", "fraud/medium/risk", RepeatedRejections, False),
        _d("system.source_silent", "system/high/tech", SourceSilent, True),
    )
}

#: The contract's rules; ``system.source_silent`` is the live runtime's own and not in replay.
CONTRACT_RULES: tuple[str, ...] = tuple(r for r in RULE_DEFS if r != "system.source_silent")

#: Escalation defaults by severity (CONTRACT section 6); ``None`` means never.
DEFAULT_ESCALATE_AFTER: dict[str, float | None] = {
    "critical": 15 * 60.0,
    "high": 3600.0,
    "medium": 4 * 3600.0,
    "low": None,
}

MAX_ESCALATION_LEVEL = 3

#: v2: acknowledgement timeout defaults by severity (CONTRACT section 8); ``None`` means never.
DEFAULT_ACK_TIMEOUT: dict[str, float | None] = {
    "critical": 30 * 60.0,
    "high": 2 * 3600.0,
    "medium": 8 * 3600.0,
    "low": None,
}

#: v2: the default inhibitions of CONTRACT section 9, target -> the rules that explain it. Every
#: rule here keeps its exceptions on the order's shard (subject = order_id), which is what lets
#: the engine judge a pair within one shard.
DEFAULT_INHIBITED_BY: dict[str, tuple[str, ...]] = {
    "payment.paid_not_updated": ("payment.orphan",),
    "logistics.tracking_stale": ("logistics.lost_or_damaged",),
    "logistics.delivery_delayed": ("logistics.lost_or_damaged",),
    "logistics.not_shipped": ("inventory.oversold",),
}

#: v2: rules whose exceptions live elsewhere than on an order's shard (subject not an order_id):
#: they can neither inhibit nor be inhibited (inhibition is judged per order_id).
NOT_PER_ORDER: frozenset[str] = frozenset(
    {
        "inventory.sync_drift",
        "payment.success_rate_drop",
        "order.creation_failure_spike",
        "order.creation_failed",
        "system.source_silent",
    }
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule as the engine runs it: code facts plus the operator's file."""

    rule_id: str
    title: str
    category: Category
    severity: Severity
    owner: Owner
    resolvable: bool
    enabled: bool
    escalate_after: float | None
    summary: str
    actions: tuple[str, ...]
    params: Any
    source: str = "<builtin>"
    #: overrides and calendars of the rule file (``engine.params``)
    tuning: Tuning = NO_TUNING
    #: the working-hours schedule its timeout counts in (None: every hour counts)
    hours: WorkingHours | None = None
    #: what ``params.resolve`` applied for one subject, as evidence names it (empty: the base)
    applied: tuple[tuple[str, str], ...] = ()
    #: v2: acknowledged this long without a resolve, it is open again (None: never)
    ack_timeout: float | None = None
    #: v2: the rules whose open exception on the same order explains this one (section 9)
    inhibited_by: tuple[str, ...] = ()
    #: v2: the remediation actions it requests (section 10): ``policy.ActionPolicy``s
    remediation: tuple[Any, ...] = ()
