"""A reference executor for the demo: a pretend OMS, payment service and WMS that carry out
orderwatch's remediation actions (CONTRACT section 10).

This is simulator code, like ``traffic.py``: it is *not* part of the detector, which never calls
another system. It shows the contract from the executing side: read ``order-actions``, act only on
``status: requested`` (``planned`` is a dry run, for review), pass ``idempotency_key`` on to the
API that does the work, and answer on ``order-action-results`` with ``action.succeeded`` or
``action.failed``. What the pretend systems do is visible on the input topics, as a real fix
would be:

* ``order.resync_status``: the OMS re-reads the payment and publishes the missing
  ``order.status_changed`` to ``paid``; the detector then resolves ``payment.paid_not_updated``
  by its own condition (the result alone resolves nothing);
* ``payment.refund``: the payment service publishes ``payment.refunded`` for the target payment;
* the rest (hold, release, notify, claim, blacklist suggestion) only answer.

Every event it publishes has an id derived from the idempotency key, so an action read twice
(at-least-once delivery) publishes byte-identical events, which the detector counts once.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

#: (stream, key, event): ``stream`` is "orders", "payments" or "results"
Publication = tuple[str, str, dict[str, Any]]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def respond(action: dict[str, Any], at: datetime, fail: bool = False) -> list[Publication]:
    """What the pretend systems publish for one action event (nothing unless ``requested``)."""
    if action.get("status") != "requested":
        return []
    key = str(action["idempotency_key"])
    order_id = str(action.get("order_id") or "")
    when = _iso(at)
    out: list[Publication] = []
    detail = "simulated failure" if fail else None
    kind = action["type"]
    if not fail and kind == "order.resync_status":
        out.append(
            (
                "orders",
                order_id,
                {
                    "event_id": f"oms-resync-{key}",
                    "type": "order.status_changed",
                    "occurred_at": when,
                    "source": "oms",
                    "order_id": order_id,
                    "status": "paid",
                    "previous_status": "pending_payment",
                },
            )
        )
        detail = "OMS re-read the payment"
    elif not fail and kind == "payment.refund":
        params = action.get("params") or {}
        out.append(
            (
                "payments",
                order_id,
                {
                    "event_id": f"pay-refund-{key}",
                    "type": "payment.refunded",
                    "occurred_at": when,
                    "source": "pay-gateway",
                    "order_id": order_id,
                    "payment_id": action["target"],
                    "refund_id": "RF" + hashlib.sha256(key.encode()).hexdigest()[:12],
                    "amount": params.get("amount"),
                    "currency": params.get("currency"),
                },
            )
        )
        detail = "refunded the way it came"
    out.append(
        (
            "results",
            order_id,
            {
                "event_id": f"result-{key}",
                "type": "action.failed" if fail else "action.succeeded",
                "occurred_at": when,
                "source": "sim-executor",
                "action_id": action["action_id"],
                "order_id": order_id,
                **({"detail": detail} if detail else {}),
            },
        )
    )
    return out


async def run(
    bootstrap: str,
    topics: dict[str, str],
    group: str = "orderwatch-sim-executor",
    fail_rate: float = 0.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    stop: asyncio.Event | None = None,
) -> None:
    """Consume ``topics["actions"]`` and publish to the orders, payments and results topics.

    ``clock`` dates what it publishes (wall time live; a demo on event time passes the action's
    own ``at``). ``fail_rate`` makes that share of actions fail, to show the circuit breaker.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        topics["actions"],
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    rng = random.Random(7)
    try:
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    try:
                        action = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        continue
                    fail = fail_rate > 0 and rng.random() < fail_rate
                    for stream, key, event in respond(action, clock(), fail):
                        await producer.send_and_wait(
                            topics[stream], orjson.dumps(event), key=key.encode()
                        )
            if batch:
                # published before committed: an action read again after a crash is answered
                # again, with the same event ids
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
