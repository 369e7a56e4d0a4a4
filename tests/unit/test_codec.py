"""What the decoder accepts as a timestamp and a customer, read against the contract's letter.

Python's ISO parser is more lenient than RFC 3339; whatever it would let through unnoticed must be
refused with a reason, so a producer drifting from the contract shows up in the dead letters.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from orderwatch.errors import EventValidationError
from orderwatch.events.codec import decode_event
from tests.factories import created


def order_at(occurred_at: str) -> bytes:
    return orjson.dumps({**created("O1"), "occurred_at": occurred_at})


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-20T10:00:00Z",
        "2026-11-20T18:00:00+08:00",
        "2026-11-20T10:00:00.123456-05:00",
        "2026-11-20t10:00:00z",
        "2026-11-20 10:00:00Z",
    ],
)
def test_rfc_3339_timestamps_with_an_offset_are_read(stamp: str) -> None:
    assert decode_event(order_at(stamp)).occurred_ts > 0


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-20T10:00:00",  # no offset
        "2026-11-20T10:00:00+0800",  # offset without its colon
        "2026-11-20T10:00Z",  # no seconds
        "2026-W47-5T10:00:00Z",  # an ISO week date
        "20261120T100000Z",  # ISO basic format
        "1763632800",  # epoch seconds as text
    ],
)
def test_other_timestamp_shapes_are_refused_with_a_reason(stamp: str) -> None:
    with pytest.raises(EventValidationError) as refused:
        decode_event(order_at(stamp))
    assert refused.value.reason == "schema"
    assert "occurred_at" in refused.value.detail


def test_a_customer_without_a_phone_is_refused() -> None:
    event: dict[str, Any] = created("O1")
    event["customer"] = {k: v for k, v in event["customer"].items() if k != "phone"}
    with pytest.raises(EventValidationError) as refused:
        decode_event(orjson.dumps(event))
    assert "customer.phone" in refused.value.detail
