"""Records one shard derives for another: a fraud window's flag for an order.

The fraud windows (``fraud.py``) live on shards keyed by an address hash, a phone hash or a
customer (``a:``, ``p:``, ``c:``), while what they flag is an order, and an operator's command for
that exception names only its rule and subject (the order_id). So a window does not raise on its
own shard: it derives a ``Flag`` that is applied on the order's shard ``o:<order_id>``, where the
exception then lives beside the order's other exceptions (commands find it, inhibition could pair
it). This is Kafka Streams' repartition of a derived record: replay holds every shard and applies
the flag at once, inline; the live worker holds one partition per engine and sends the flag
through the shard topic to the partition that owns the order (``Engine.forward``), where it is
read like any routed event. Either way the order's shard applies the same raise.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from orderwatch.engine.state import hour_key

#: ``type`` of a flag on the shard topic: not a contract type, so no input can be one (stage 1
#: dead-letters unknown types; only stage 2 reads these).
FLAG: Literal["orderwatch.flag"] = "orderwatch.flag"


class _Derived(BaseModel):
    """What every derived record shares: frozen, strict, written to the shard topic as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump())


DerivedT = TypeVar("DerivedT", bound=_Derived)


class Flag(_Derived):
    """A window's decision that an order is flagged by a fraud rule: the raise, as data."""

    type: Literal["orderwatch.flag"] = FLAG
    event_id: str
    rule_id: str
    order_id: str
    event_time: float
    #: the window's clock when it decided (the ``detected_at`` of the raise in replay); read as
    #: the record's time, so a worker on event time applies it no earlier than that
    occurred_ts: float
    event_ids: list[str]
    values: dict[str, Any]

    @property
    def shard_key(self) -> str:
        """The shard that applies it: the order's."""
        return "o:" + self.order_id


#: v2 (section 11): an order's first refund or rejection, for its customer's shard to count
MARK: Literal["orderwatch.mark"] = "orderwatch.mark"


class Mark(_Derived):
    """An order's shard tells its customer's shard (``c:``) that the order was first refunded
    (or first rejected a delivery) at ``at``: the reverse of a ``Flag`` (``engine/behaviour.py``).
    """

    type: Literal["orderwatch.mark"] = MARK
    event_id: str
    rule_id: str
    order_id: str
    customer_id: str
    #: the occurred_at of the refund (rejection): the time the rule's window counts
    at: float
    #: the refund's (rejection's) event_id, for evidence
    source_event_id: str
    #: the order shard's clock when it sent the mark (the record's time, as for ``Flag``)
    occurred_ts: float

    @property
    def shard_key(self) -> str:
        """The shard that applies it: the customer's."""
        return "c:" + self.customer_id


#: v2 (section 10): what an order's shard asks of the action shard (``engine/actions.py``)
INTENT: Literal["orderwatch.action"] = "orderwatch.action"


class Intent(_Derived):
    """A request for an action, an exception resolved, or an operator's decision on an action:
    sent by the shard that owns the exception to the one action shard ``g:actions``, whose
    engine keeps every action's status (in the order's ``g:actions/<order_id>``) and the limits
    the actions of a type share."""

    type: Literal["orderwatch.action"] = INTENT
    event_id: str
    kind: Literal["request", "resolved", "decide"]
    exception_id: str
    order_id: str | None
    #: the order shard's clock when it decided (the record's time)
    occurred_ts: float
    #: request: the action (its event's fields, ``approval_ttl`` and ``max_per_hour``);
    #: decide: ``command_id``, ``action_id``, ``approve``, the exception's ``status``
    data: dict[str, Any]

    @property
    def shard_key(self) -> str:
        return "g:actions"


#: v2 (section 11): an order's judgement for an hourly indicator, for the KPI shard
CONTRIBUTION: Literal["orderwatch.kpi"] = "orderwatch.kpi"


class Contribution(_Derived):
    """One item counted in an indicator's hour (``engine/kpi.py``): an order on time (``hit``
    1) or not, a payment succeeded or not. Sent to the shard of its hour."""

    type: Literal["orderwatch.kpi"] = CONTRIBUTION
    event_id: str
    kpi: str
    window_start: float
    dimension: str
    item: str
    hit: int
    occurred_ts: float

    @property
    def shard_key(self) -> str:
        """The shard of its hour, ``g:kpis/<hour start>``."""
        return hour_key(self.window_start)


_set = object.__setattr__


def _built(kind: type[DerivedT], values: dict[str, Any]) -> DerivedT:
    """``kind.model_construct(**values)`` for ``values`` naming every field of ``kind`` in its
    declared order, at a third of the cost: no per-field loop (aliases, defaults), which for
    the KPI contributions, one per payment and per judged order (``kpi._contribution``), was
    most of what counting an order cost. The instance is the one ``model_construct`` builds
    (``tests/unit/kpis/test_derived_built.py`` compares them), so ``to_bytes`` is unchanged.
    """
    record = kind.__new__(kind)
    _set(record, "__dict__", values)
    _set(record, "__pydantic_fields_set__", set(values))
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


def contribution(
    kpi: str, start: float, dim: str, item: str, hit: int, now: float, event_id: str
) -> Contribution:
    """A ``Contribution`` (``kpi._contribution``), built as ``model_construct`` would."""
    return _built(
        Contribution,
        {
            "type": CONTRIBUTION,
            "event_id": event_id,
            "kpi": kpi,
            "window_start": start,
            "dimension": dim,
            "item": item,
            "hit": hit,
            "occurred_ts": now,
        },
    )


def mark(
    rule_id: str, order_id: str, customer_id: str, at: float, source_event_id: str, now: float
) -> Mark:
    return Mark.model_construct(
        type=MARK,
        event_id=f"{MARK}|{rule_id}|{order_id}",
        rule_id=rule_id,
        order_id=order_id,
        customer_id=customer_id,
        at=at,
        source_event_id=source_event_id,
        occurred_ts=now,
    )


def flag(
    rule_id: str,
    order_id: str,
    event_time: float,
    at: float,
    event_ids: list[str],
    values: dict[str, Any],
) -> Flag:
    return Flag.model_construct(
        type=FLAG,
        event_id=f"{FLAG}|{rule_id}|{order_id}",
        rule_id=rule_id,
        order_id=order_id,
        event_time=event_time,
        occurred_ts=at,
        event_ids=event_ids,
        values=values,
    )


Derived = Flag | Mark | Intent | Contribution
#: every derived record's class by its ``type``, and how its JSON starts on the shard topic
_KINDS: dict[str, type[Derived]] = {
    FLAG: Flag,
    MARK: Mark,
    INTENT: Intent,
    CONTRIBUTION: Contribution,
}
_PREFIXES = [(b'{"type":"' + name.encode() + b'"', kind) for name, kind in _KINDS.items()]


def decode(raw: bytes) -> Derived | None:
    """A derived record read back from the shard topic, or None if the bytes are not one."""
    for prefix, kind in _PREFIXES:
        if raw.startswith(prefix):
            try:
                return kind.model_validate_json(raw)
            except ValidationError:
                return None
    return None


def from_dict(data: dict[str, Any]) -> Derived | None:
    """A derived record parked in a shard and restored from its changelog form."""
    kind = _KINDS.get(data.get("type"))  # type: ignore[arg-type]
    return None if kind is None else kind.model_validate(data)
