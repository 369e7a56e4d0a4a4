"""Readable builders of contract events for tests: ``created("O1", at="10:00")`` and friends.

Times are given as ``HH:MM[:SS]`` on a fixed test day (UTC) or as full RFC 3339 strings, so a test
reads like the rule book: "paid at 10:00, status still pending at 10:10:01".
"""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from orderwatch.engine import Engine
from orderwatch.events.codec import decode_event, encode_exception
from orderwatch.events.exception import ExceptionEvent
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog

DAY = "2026-11-20"
_ids = itertools.count(1)


def ts(at: str) -> str:
    """``"10:00"`` -> ``"2026-11-20T10:00:00Z"``; full timestamps pass through."""
    if "T" in at:
        return at
    if at.count(":") == 1:
        at += ":00"
    return f"{DAY}T{at}Z"


def plus(at: str, **delta: float) -> str:
    base = datetime.fromisoformat(ts(at).replace("Z", "+00:00"))
    return (base + timedelta(**delta)).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _event(type_: str, at: str, source: str, event_id: str | None, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id or f"ev-{next(_ids)}",
        "type": type_,
        "occurred_at": ts(at),
        "source": source,
        **{k: v for k, v in fields.items() if v is not None},
    }


def address(**over: Any) -> dict[str, Any]:
    addr = {
        "name": "Zhang San",
        "phone": "13812345678",
        "country": "CN",
        "province": "Shanghai",
        "city": "Shanghai",
        "district": "Huangpu",
        "line1": "100 Nanjing East Road",
        "postal_code": "200001",
    }
    addr.update(over)
    return {k: v for k, v in addr.items() if v is not None}


def created(
    order_id: str,
    at: str = "10:00",
    *,
    total: str = "199.00",
    currency: str = "CNY",
    customer_id: str = "C1",
    account_created_at: str = "2025-01-01T00:00:00Z",
    items: list[dict[str, Any]] | None = None,
    event_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    fields.setdefault("shipping_address", address())
    return _event(
        "order.created",
        at,
        "oms",
        event_id,
        order_id=order_id,
        customer={
            "customer_id": customer_id,
            "account_created_at": account_created_at,
            "phone": fields.pop("customer_phone", "13812345678"),
        },
        items=items or [{"sku": "SKU-1", "quantity": 1, "unit_price": total}],
        total_amount=total,
        currency=currency,
        **fields,
    )


def status(order_id: str, status_: str, at: str, **fields: Any) -> dict[str, Any]:
    return _event(
        "order.status_changed",
        at,
        "oms",
        fields.pop("event_id", None),
        order_id=order_id,
        status=status_,
        **fields,
    )


def address_changed(order_id: str, at: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("shipping_address", address())
    return _event(
        "order.address_changed",
        at,
        "oms",
        fields.pop("event_id", None),
        order_id=order_id,
        **fields,
    )


def creation_failed(at: str, order_id: str | None = None, **fields: Any) -> dict[str, Any]:
    fields.setdefault("error_code", "DB_TIMEOUT")
    return _event(
        "order.creation_failed",
        at,
        "oms",
        fields.pop("event_id", None),
        order_id=order_id,
        **fields,
    )


def paid(
    order_id: str,
    at: str,
    payment_id: str = "P1",
    amount: str = "199.00",
    currency: str = "CNY",
    **fields: Any,
) -> dict[str, Any]:
    return _event(
        "payment.succeeded",
        at,
        "pay-gateway",
        fields.pop("event_id", None),
        order_id=order_id,
        payment_id=payment_id,
        amount=amount,
        currency=currency,
        **fields,
    )


def payment_failed(
    order_id: str,
    at: str,
    payment_id: str = "PF1",
    amount: str = "199.00",
    reason_code: str = "insufficient_funds",
    **fields: Any,
) -> dict[str, Any]:
    return _event(
        "payment.failed",
        at,
        "pay-gateway",
        fields.pop("event_id", None),
        order_id=order_id,
        payment_id=payment_id,
        amount=amount,
        currency="CNY",
        reason_code=reason_code,
        **fields,
    )


def refunded(
    order_id: str, at: str, payment_id: str = "P1", amount: str = "199.00", **fields: Any
) -> dict[str, Any]:
    return _event(
        "payment.refunded",
        at,
        "pay-gateway",
        fields.pop("event_id", None),
        order_id=order_id,
        payment_id=payment_id,
        refund_id=f"R-{payment_id}",
        amount=amount,
        currency="CNY",
        **fields,
    )


def reserved(
    order_id: str,
    at: str,
    sku: str = "SKU-1",
    available_after: int = 10,
    warehouse_id: str = "WH1",
    **fields: Any,
) -> dict[str, Any]:
    return _event(
        "inventory.reserved",
        at,
        "wms",
        fields.pop("event_id", None),
        order_id=order_id,
        sku=sku,
        warehouse_id=warehouse_id,
        quantity=1,
        available_after=available_after,
        **fields,
    )


def reservation_failed(
    order_id: str,
    at: str,
    reason: str = "insufficient_stock",
    sku: str = "SKU-1",
    warehouse_id: str = "WH1",
    **fields: Any,
) -> dict[str, Any]:
    return _event(
        "inventory.reservation_failed",
        at,
        "wms",
        fields.pop("event_id", None),
        order_id=order_id,
        sku=sku,
        warehouse_id=warehouse_id,
        quantity=1,
        reason=reason,
        **fields,
    )


def snapshot(
    sku: str, at: str, available: int, source: str, warehouse_id: str = "WH1", **fields: Any
) -> dict[str, Any]:
    return _event(
        "inventory.snapshot",
        at,
        source,
        fields.pop("event_id", None),
        sku=sku,
        warehouse_id=warehouse_id,
        available=available,
        **fields,
    )


def logistics(kind: str, order_id: str, at: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("tracking_no", f"TN-{order_id}")
    fields.setdefault("carrier", "carrier-sf")
    return _event(
        f"logistics.{kind}",
        at,
        "carrier-sf",
        fields.pop("event_id", None),
        order_id=order_id,
        **fields,
    )


def blacklist(
    kind: str, value: str, at: str = "09:00", removed: bool = False, **fields: Any
) -> dict[str, Any]:
    type_ = "blacklist.removed" if removed else "blacklist.added"
    return _event(type_, at, "risk", fields.pop("event_id", None), kind=kind, value=value, **fields)


def end_ticks(at: str, partitions: int = 4) -> list[dict[str, Any]]:
    """One quiet event (a lone stock snapshot) on every shard partition, all at ``at``.

    In event-time mode each shard partition keeps its own clock (Kafka Streams' stream time) while
    replay has one; ending a live scenario with a tick on every partition makes every clock end
    where replay's does, so the two can be compared exactly.
    """
    from aiokafka.partitioner import murmur2

    ticks: list[dict[str, Any]] = []
    covered: set[int] = set()
    i = 0
    while len(covered) < partitions:
        sku = f"TICK-{i}"
        p = int(murmur2(f"s:{sku}/WH0".encode()) & 0x7FFFFFFF) % partitions
        if p not in covered:
            covered.add(p)
            ticks.append(snapshot(sku, at, 1, "wms", warehouse_id="WH0"))
        i += 1
    return ticks


def to_jsonl(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def command(
    kind: str,
    exception: ExceptionEvent | dict[str, Any],
    at: str,
    *,
    actor: str | None = "alice",
    event_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An operator's ``command.<kind>`` about ``exception`` (its id, rule and subject copied, as
    the contract asks), sent by ``actor``; ``fields`` are the command's own (``for_``: ``for``).
    """
    ex = exception if isinstance(exception, dict) else exception.model_dump(mode="json")
    if "for_" in fields:
        fields["for"] = fields.pop("for_")
    return _event(
        f"command.{kind}",
        at,
        "cli",
        event_id,
        exception_id=ex["exception_id"],
        rule_id=ex["rule_id"],
        subject=ex["subject"],
        actor=actor,
        **fields,
    )


class Run:
    """The result of running events through the engine exactly as ``orderwatch replay`` does."""

    def __init__(
        self, exceptions: list[ExceptionEvent], stderr: str, replies: list[bytes] | None = None
    ) -> None:
        self.exceptions = exceptions
        self.stderr = stderr
        #: the replies to the commands in the input (``--replies``), as bytes, in order
        self.replies = replies or []

    def reply(self, command_id: str) -> dict[str, Any]:
        """The (last) reply to a command, as a dict."""
        [*_, last] = [r for r in map(orjson.loads, self.replies) if r["command_id"] == command_id]
        return last  # type: ignore[no-any-return]

    def of(self, rule_id: str, state: str | None = None) -> list[ExceptionEvent]:
        return [
            e
            for e in self.exceptions
            if e.rule_id == rule_id and (state is None or e.state == state)
        ]

    def states(self, rule_id: str) -> list[str]:
        return [e.state for e in self.of(rule_id)]

    @property
    def rules(self) -> set[str]:
        return {e.rule_id for e in self.exceptions}


@functools.lru_cache(maxsize=8)
def _catalog(rules_dir: str | None) -> Any:
    """Rule files parsed once per directory: the catalog is immutable and the engine copies it."""
    return load_catalog(rules_dir)


def run(events: list[dict[str, Any]], until: str | None = None, rules_dir: Any = None) -> Run:
    """Replay ``events`` (in list order) through a fresh engine; ``until`` as ``--until``."""
    import io

    out, err, replies = io.BytesIO(), io.StringIO(), io.BytesIO()
    engine = Engine(_catalog(None if rules_dir is None else str(rules_dir)))
    until_at = datetime.fromisoformat(ts(until).replace("Z", "+00:00")) if until else None
    replay(io.BytesIO(to_jsonl(events)).readlines(), engine, out, err, until_at, replies)
    parsed = [
        ExceptionEvent.model_validate_json(line) for line in out.getvalue().splitlines() if line
    ]
    # every exception must survive the wire format unchanged
    for e in parsed:
        assert ExceptionEvent.model_validate_json(encode_exception(e)) == e
    return Run(parsed, err.getvalue(), replies.getvalue().splitlines())


__all__ = ["decode_event"]
