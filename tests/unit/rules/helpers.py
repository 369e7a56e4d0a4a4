"""Builders the logistics and customer rule books share, on top of ``tests.factories``."""

from __future__ import annotations

from typing import Any

from tests.factories import logistics


def carrier_exception(order_id: str, at: str, kind: str, **fields: Any) -> dict[str, Any]:
    """A ``logistics.exception`` of ``kind`` (the factory's own first argument is the type)."""
    event = logistics("exception", order_id, at, **fields)
    event["kind"] = kind
    return event
