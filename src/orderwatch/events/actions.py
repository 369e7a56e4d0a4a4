"""Remediation actions on the wire (CONTRACT section 10): action events out, results in.

orderwatch never calls the systems that own a fix. It publishes an ``ActionEvent`` to
``order-actions`` for each status an action reaches, and reads what the executing system did as
input events of the ``action.*`` stream on ``order-action-results`` (``ActionSucceeded``,
``ActionFailed``), in the envelope of section 1 like every other input.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeAlias

import orjson
from pydantic import BaseModel, ConfigDict, Field

from orderwatch.events.inbound import EventId, NonEmpty, _Event

ActionType: TypeAlias = Literal[
    "order.resync_status",
    "payment.refund",
    "fulfillment.hold",
    "fulfillment.release",
    "customer.notify",
    "carrier.claim",
    "blacklist.suggest",
]
ActionMode: TypeAlias = Literal["dry_run", "auto", "approval"]
ActionStatus: TypeAlias = Literal[
    "planned",
    "requested",
    "awaiting_approval",
    "rejected",
    "expired",
    "cancelled",
    "throttled",
    "paused",
    "succeeded",
    "failed",
]
#: The input types of the ``action.*`` stream.
ACTION_RESULT_TYPES: tuple[str, ...] = ("action.succeeded", "action.failed")


class _Result(_Event):
    """What the executing system reports for one action it was asked to carry out."""

    action_id: EventId = Field(description="the action's id (its idempotency_key)")
    order_id: NonEmpty
    detail: str | None = Field(None, description="free text from the executor, e.g. an API error")


class ActionSucceeded(_Result):
    type: Literal["action.succeeded"]


class ActionFailed(_Result):
    type: Literal["action.failed"]


class ActionEvent(BaseModel):
    """One status change of a remediation action, published to ``order-actions`` by order_id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action_id: str = Field(description="derived from exception_id, type and target only")
    type: ActionType
    exception_id: str
    rule_id: str
    order_id: str | None
    target: str | None = Field(description="the payment_id for refunds, else null")
    params: dict[str, Any]
    mode: ActionMode
    status: ActionStatus
    at: datetime = Field(description="the detector's clock when this status was reached")
    idempotency_key: str = Field(description="= action_id: pass it on to the executing API")


def encode_entry(entry: BaseModel) -> bytes:
    """The JSON body of a ``blacklist.added`` an approved ``blacklist.suggest`` makes: an input
    event of the blacklist stream (CONTRACT section 1), keyed there by its value."""
    return orjson.dumps(entry.model_dump(mode="json"))


__all__ = [
    "ACTION_RESULT_TYPES",
    "ActionEvent",
    "ActionFailed",
    "ActionMode",
    "ActionStatus",
    "ActionSucceeded",
    "ActionType",
    "encode_entry",
]
