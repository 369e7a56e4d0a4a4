"""The decoder's native fast path changes nothing but speed (``events/fastpath.py``).

Properties, over the structural fuzz of ``test_codec_fuzz`` and over strings aimed at the three
checks it replaces (timestamp, money, currency):

- what the fast validator accepts, the models' own validator accepts, giving an event of the same
  class with the same fields, each of the same value and form (``repr``: ``Decimal("1.0")`` is
  not ``Decimal("1.00")``);
- ``decode_event`` gives for every input what it gives with the models' validator alone (the
  decoder before the fast path): the same event, or the same reason and detail.

And the fast path is what it claims: built from the replaced schema (pydantic-core would
otherwise reuse each model's own validator), and its refusals are left to the models.
"""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from orderwatch.errors import EventValidationError
from orderwatch.events import codec
from orderwatch.events.codec import decode_event
from orderwatch.events.fastpath import FAST_VALIDATOR
from orderwatch.events.inbound import (
    CURRENCY_SHAPE,
    EVENT_ADAPTER,
    MONEY_SHAPE,
    RFC3339_IN_YEARS,
    OrderCreated,
    PaymentSucceeded,
)
from tests.unit.test_codec_fuzz import FUZZ, SEEDS, damaged, mutated

EXACT = EVENT_ADAPTER.validator
PAYMENT = next(s for s in SEEDS if s["type"] == "payment.succeeded")
ORDER = next(s for s in SEEDS if s["type"] == "order.created")


def outcome(raw: bytes) -> Any:
    """What the decoder gives: the event's class and ``repr``, or the reason and detail."""
    try:
        event = decode_event(raw)
    except EventValidationError as exc:
        return ("refused", exc.reason, exc.detail)
    return (type(event), repr(event), event.model_dump())


def outcome_without_fast_path(raw: bytes) -> Any:
    with patch.object(codec, "_FAST_VALIDATE_JSON", codec._VALIDATE_JSON):
        return outcome(raw)


def assert_fast_agrees(raw: bytes) -> None:
    try:
        fast = FAST_VALIDATOR.validate_json(raw)
    except ValidationError:
        pass
    else:
        exact = EXACT.validate_json(raw)  # raises if the fast path accepted more
        assert type(fast) is type(exact)
        assert repr(fast) == repr(exact)
        # by repr: a NaN (a command's rule_id is any JSON value) is never equal to itself
        assert repr(fast.model_dump()) == repr(exact.model_dump())
        assert fast.model_fields_set == exact.model_fields_set
    assert outcome(raw) == outcome_without_fast_path(raw)


@FUZZ
@given(st.one_of(mutated(), damaged()))
def test_the_fast_path_accepts_only_what_the_models_accept_and_alike(raw: bytes) -> None:
    assert_fast_agrees(raw)


def test_a_nan_both_paths_accept_is_compared_as_alike() -> None:
    """Found by the fuzz test in CI: both validators take a NaN ``rule_id`` (``decode_event``
    then refuses the message as ``invalid_json``), and their dumps differed only in that NaN is
    not equal to NaN."""
    assert_fast_agrees(
        b'{"event_id":"ev-30","type":"command.acknowledge","occurred_at":"2026-11-20T16:00:00Z",'
        b'"source":"cli","exception_id":"3f1c0c5e-1d2b-5c7a-9d41-0a1b2c3d4e5f","rule_id":NaN,'
        b'"subject":"O1","actor":"alice","expected_status":"open"}'
    )


#: the shape each native check accepts, shapes just beside it, and any text of their characters
MONEY_TEXT = st.one_of(
    st.from_regex(f"^{MONEY_SHAPE}$", fullmatch=True),
    st.text(alphabet="0123456789.-+eE _\u0663\uff11", max_size=30),
)
TIME_TEXT = st.one_of(
    st.from_regex(f"^{RFC3339_IN_YEARS}$", fullmatch=True),
    st.text(alphabet="0123456789-+:.TtZz \u0663", max_size=32),
)
CODE_TEXT = st.one_of(
    st.from_regex(f"^{CURRENCY_SHAPE}$", fullmatch=True),
    st.from_regex(r"^ ?[A-Za-z\u00c5]{2,4} ?$", fullmatch=True),
    st.text(alphabet="ABCXYZabcz \u00c5\u0663", max_size=5),
)


@FUZZ
@given(MONEY_TEXT, CODE_TEXT, TIME_TEXT)
def test_amounts_currencies_and_times_are_judged_as_by_the_models(
    amount: str, currency: str, at: str
) -> None:
    assert_fast_agrees(orjson.dumps({**PAYMENT, "amount": amount}))
    assert_fast_agrees(orjson.dumps({**PAYMENT, "currency": currency}))
    assert_fast_agrees(orjson.dumps({**PAYMENT, "occurred_at": at}))
    item = {"sku": "SKU-1", "quantity": 1, "unit_price": amount}
    assert_fast_agrees(orjson.dumps({**ORDER, "items": [item], "total_amount": amount}))
    customer = {**ORDER["customer"], "account_created_at": at}
    assert_fast_agrees(orjson.dumps({**ORDER, "customer": customer, "promised_delivery_by": at}))


#: every amount built of these parts: the native shape's edges (12 or 13 digits either side of
#: the point), and the signs, exponents and spaces only ``_money`` reads
EDGE_AMOUNTS = [
    f"{space}{sign}{head}{point}{tail}{exponent}"
    for space in ("", " ")
    for sign in ("", "-", "+")
    for head in ("", "0", "7", "9" * 11, "9" * 12, "1" + "0" * 12, "0" * 13)
    for point in ("", ".")
    for tail in ("", "5", "0" * 12, "0" * 13, "1" * 13)
    for exponent in ("", "e0", "E-1", "e12")
]
#: every timestamp built of these parts: years at and beyond the range, fields out of range,
#: the separators and offsets RFC 3339 allows and the ones it does not
EDGE_TIMES = [
    f"{year}-{date}{sep}{clock}{fraction}{zone}"
    for year in ("0001", "999", "1899", "1900", "2026", "8999", "9000", "9001", "9999", "10000")
    for date in ("11-20", "02-30", "13-01", "1-20")
    for sep in ("T", "t", " ", "_")
    for clock in ("10:00:00", "23:59:60", "24:00:00", "10:00")
    for fraction in ("", ".", ".5", ".1234567891")
    for zone in ("Z", "z", "", "+08:00", "-00:00", "+0800", "+8:00", "+08")
]
EDGE_CODES = ["CNY", "cny", "Cny", " CNY", "CNY ", "CN", "CNYX", "C1Y", "\u00c5BC", "\uff23NY", ""]


def test_the_edges_of_each_replaced_check_are_judged_as_by_the_models() -> None:
    for amount in EDGE_AMOUNTS:
        assert_fast_agrees(orjson.dumps({**PAYMENT, "amount": amount}))
    for at in EDGE_TIMES:
        assert_fast_agrees(orjson.dumps({**PAYMENT, "occurred_at": at}))
    for code in EDGE_CODES:
        assert_fast_agrees(orjson.dumps({**PAYMENT, "currency": code}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", " 199.00"),  # _money strips; the native shape has no space
        ("amount", "+199.00"),
        ("amount", "1.5e2"),
        ("amount", "\u0663.00"),  # an Arabic-Indic 3: a digit to Decimal
        ("currency", "cny"),  # _currency upper-cases
        ("currency", " CNY"),
    ],
)
def test_what_only_the_models_accept_is_still_accepted(field: str, value: str) -> None:
    raw = orjson.dumps({**PAYMENT, field: value})
    with pytest.raises(ValidationError):
        FAST_VALIDATOR.validate_json(raw)
    event = decode_event(raw)
    assert isinstance(event, PaymentSucceeded)
    assert repr(event) == repr(EXACT.validate_json(raw))


def test_the_fast_path_is_native_and_its_refusals_keep_the_models_reasons() -> None:
    raw = orjson.dumps({**PAYMENT, "occurred_at": "2026-11-20T10:00:00+0800"})
    with pytest.raises(ValidationError) as fast:
        FAST_VALIDATOR.validate_json(raw)
    # pydantic-core's own pattern refused it: the schema built is the replaced one, not the
    # model's own validator (which pydantic-core reuses for a complete class)
    assert fast.value.errors()[0]["type"] == "string_pattern_mismatch"
    with pytest.raises(EventValidationError) as refused:
        decode_event(raw)
    assert refused.value.reason == "schema"
    assert "timestamp must be an RFC 3339 string with an offset" in refused.value.detail
    assert "pattern" not in refused.value.detail


def test_building_the_fast_path_leaves_the_models_as_they_were() -> None:
    for cls in (OrderCreated, PaymentSucceeded):
        assert cls.__pydantic_complete__ is True
    raw = orjson.dumps({**PAYMENT, "amount": " 1.00"})
    assert PaymentSucceeded.model_validate_json(raw).amount == 1
