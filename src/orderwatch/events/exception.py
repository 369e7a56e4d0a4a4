"""The exception event of the contract (CONTRACT section 2): what orderwatch publishes.

It is written for the people who act on it: ``summary`` says what happened, ``evidence`` proves
it, ``owner`` says whose job it is and ``actions`` what to do, and nothing in it identifies a
person (phones masked, addresses reduced to region plus hash, names dropped).
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Category: TypeAlias = Literal[
    "payment", "inventory", "logistics", "customer_info", "system", "fraud"
]
Severity: TypeAlias = Literal["critical", "high", "medium", "low"]
Owner: TypeAlias = Literal["payments", "warehouse", "logistics", "customer_service", "tech", "risk"]
State: TypeAlias = Literal[
    "raised",
    "escalated",
    "resolved",
    "inhibited",
    "acknowledged",
    "unacknowledged",
    "assigned",
    "snoozed",
    "commented",
    "reopened",
]
#: v2: what an exception is after an event (CONTRACT sections 2, 8, 9)
Status: TypeAlias = Literal["open", "acknowledged", "snoozed", "inhibited", "resolved"]

#: A value in evidence: kept to JSON scalars so any consumer can read it without our models.
EvidenceValue: TypeAlias = str | int | bool | None


class Evidence(BaseModel):
    """The proof: which input events and which values made the rule fire (or resolve)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_ids: list[str] = Field(
        description="event_ids of the input events that prove the condition, oldest first"
    )
    values: dict[str, EvidenceValue] = Field(
        default_factory=dict,
        description="the values compared by the rule (amounts as decimal strings, masked PII)",
    )


class ExceptionEvent(BaseModel):
    """One state change of one detected exception (raised, escalated, resolved; v2 also the
    operators' commands and inhibition).

    The v2 fields come last and have defaults, so an event a v1 detector published still reads.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    exception_id: str = Field(
        description="stable id: the same exception gets the same id across restarts and replays"
    )
    rule_id: str
    category: Category
    severity: Severity
    state: State
    subject: str = Field(
        description="order_id for order rules, sku/warehouse_id for drift, window start for windows"
    )
    order_id: str | None = None
    sku: str | None = None
    warehouse_id: str | None = None
    detected_at: AwareDatetime = Field(description="the detector's clock when it fired")
    event_time: AwareDatetime = Field(
        description="when the condition became true: trigger occurred_at or the timeout deadline"
    )
    summary: str
    evidence: Evidence
    owner: Owner
    actions: list[str]
    escalation_level: int = Field(ge=0, le=3)
    seq: int = Field(
        1,
        ge=1,
        description="v2: 1 for the first event of an exception_id, +1 at each later one; "
        "consumers order and dedupe by it",
    )
    status: Status | None = Field(
        None, description="v2: the exception's status after this event (null only from v1)"
    )
    assignee: str | None = Field(None, description="v2: who handles it (command.assign)")
    acknowledged_by: str | None = Field(
        None, description="v2: who acknowledged it, while acknowledged or snoozed"
    )
    snoozed_until: AwareDatetime | None = Field(None, description="v2: end of the snooze")
    resolved_by: Literal["rule", "operator"] | None = Field(
        None, description="v2: null until resolved; then rule or operator"
    )
    resolution: Literal["fixed", "false_positive", "duplicate", "wont_fix"] | None = Field(
        None, description="v2: set by command.resolve and kept on later events"
    )
    note: str | None = Field(
        None, description="v2: the note of the command that produced this event (phones masked)"
    )
    inhibited_by: str | None = Field(
        None, description="v2: exception_id of the open exception that explains this one"
    )

    @property
    def change_id(self) -> str:
        """Id of this state change: stable across retries, distinct per state and level.

        Used as the CloudEvents ``ce_id`` so consumers can drop re-deliveries. v2 appends ``seq``:
        an exception can now be acknowledged, or resolved and reopened, more than once at one
        level, and each of those events must keep an id of its own.
        """
        return f"{self.exception_id}:{self.state}:{self.escalation_level}:{self.seq}"
