"""What the decoder accepts as a timestamp and a customer, read against the contract's letter.

Python's ISO parser is more lenient than RFC 3339; whatever it would let through unnoticed must be
refused with a reason, so a producer drifting from the contract shows up in the dead letters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderwatch.errors import EventValidationError
from orderwatch.events import inbound
from orderwatch.events.codec import decode_event
from orderwatch.events.inbound import epoch_seconds
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


@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(8999, 12, 31)),
    st.sampled_from(
        ["Z", "z", "+00:00", "-00:00", "+08:00", "-05:30", "+05:45", "+14:00", "-12:00", "-23:59"]
    ),
    st.sampled_from([0, 1, 3, 6]),
)
def test_occurred_ts_is_the_timestamp_of_occurred_at(
    at: datetime, offset: str, digits: int
) -> None:
    """``occurred_ts`` computes the epoch seconds itself (pydantic's ``tzinfo`` makes
    ``timestamp()`` slow): it must be exactly ``timestamp()``, bit for bit, at any offset; and
    so must ``epoch_seconds`` of the event's other times."""
    text = at.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{at.microsecond:06d}"[: digits + 1] if digits else ""
    )
    event = decode_event(order_at(text + offset))
    assert event.occurred_ts == event.occurred_at.timestamp()
    assert event.occurred_ts.hex() == event.occurred_at.timestamp().hex()
    assert epoch_seconds(event.occurred_at).hex() == event.occurred_at.timestamp().hex()
    account = event.customer.account_created_at  # type: ignore[attr-defined]
    assert epoch_seconds(account).hex() == account.timestamp().hex()


def test_epoch_seconds_takes_its_shortcuts_and_timestamp_for_any_other_zone() -> None:
    """The offset-0 object and the table of fixed offsets are what the decoder gives (else the
    shortcuts are never taken); a zone whose offset depends on the date, a standard
    ``timezone`` and offsets beyond the table's size get ``timestamp()`` itself."""
    utc = decode_event(order_at("2026-11-20T10:00:00.5Z")).occurred_at
    assert utc.tzinfo is inbound._UTC
    east = decode_event(order_at("2026-11-20T18:00:00.25+08:00")).occurred_at
    assert type(east.tzinfo) is inbound._TZINFO and east.tzinfo in inbound._OFFSETS
    assert inbound._OFFSETS[east.tzinfo] == 8 * 3600
    for at in (
        datetime(2026, 3, 29, 1, 30, 0, 7, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Berlin")),
        datetime(2026, 11, 20, 18, 0, 0, 1, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ):
        assert epoch_seconds(at).hex() == at.timestamp().hex()
    with mock.patch.object(inbound, "_OFFSETS", {}), mock.patch.object(inbound, "_MAX_OFFSETS", 1):
        for minutes in range(-600, 600, 7):
            at = decode_event(order_at(f"2026-11-20T18:00:00.1{_offset(minutes)}")).occurred_at
            assert epoch_seconds(at).hex() == at.timestamp().hex()
        assert len(inbound._OFFSETS) == 1  # bounded: a producer of every offset cannot grow it


def _offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@pytest.mark.parametrize("year", [1900, 1999, 2000, 8999, 9000])
def test_years_at_the_edges_of_the_range_are_read(year: int) -> None:
    assert decode_event(order_at(f"{year}-06-01T00:00:00Z")).occurred_at.year == year


@pytest.mark.parametrize("year", ["0001", "1899", "9001", "9999"])
def test_years_beyond_the_range_are_refused_with_that_reason(year: str) -> None:
    """``_rfc3339`` accepts the common case by one pattern with the years in it: a year just
    outside must still reach the full checks and their reason."""
    with pytest.raises(EventValidationError) as refused:
        decode_event(order_at(f"{year}-06-01T00:00:00Z"))
    assert "outside the years 1900-9000" in refused.value.detail


#: where the NaN / Infinity literals may stand in a message that is otherwise valid
NON_FINITE = [
    b',"extra":NaN}',
    b',"extra":[1,Infinity]}',
    b',"extra":{"a":-Infinity}}',
    b',"extra":[{"b":[NaN]}]}',
]


@pytest.mark.parametrize("tail", NON_FINITE)
def test_nan_and_infinity_literals_are_refused_wherever_they_stand(tail: bytes) -> None:
    raw = orjson.dumps(created("O1"))[:-1] + tail
    with pytest.raises(EventValidationError) as refused:
        decode_event(raw)
    assert refused.value.reason == "invalid_json"
    # and a literal under a key that a later duplicate replaces is still in the message
    first = b'{"remark":' + tail[len(b',"extra":') : -1] + b"," + orjson.dumps(created("O1"))[1:]
    with pytest.raises(EventValidationError) as refused:
        decode_event(first)
    assert refused.value.reason == "invalid_json"


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "NaN Infinity", "CNY", "nan"])
def test_text_that_spells_nan_or_infinity_is_only_text(text: str) -> None:
    event = decode_event(orjson.dumps({**created("O1"), "remark": text, text: text}))
    assert event.remark == text  # type: ignore[union-attr]
