"""Properties of the engine that no list of examples can pin down.

(a) At-least-once delivery: re-delivering any subset of the input, appended at the end or each
    copy slipped in somewhere after its original, changes nothing in the output.
(b) Privacy: no phone number, street line or recipient name ever appears in clear in the output,
    whatever the customer and fraud rules find.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderwatch.engine import Engine
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import (
    address,
    address_changed,
    blacklist,
    command,
    created,
    logistics,
    paid,
    plus,
    status,
    to_jsonl,
)

BASE = "2026-11-20T08:00:00Z"
UNTIL = plus(BASE, days=12)
PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Event = dict[str, Any]


def _at(minutes: int) -> str:
    return plus(BASE, minutes=minutes)


# --- what a person writes ----------------------------------------------------------------------

_LETTERS = "ghjkmnpqrstvwxyz"  # no hex digits: a name can never hide inside a hash or an id
names = st.builds(
    lambda first, last: f"{first} {last}",
    st.sampled_from(["Xq", "Zhv", "张", "Łuk", "Örn"]),
    st.text(alphabet=_LETTERS + "王李", min_size=4, max_size=10),
)
streets = st.builds(
    lambda n, street, kind: f"{n} {street} {kind}",
    st.integers(1, 999),
    st.text(alphabet=_LETTERS + "南京路", min_size=5, max_size=12),
    st.sampled_from(["Road", "路", "Street", "Lane"]),
)
short_streets = st.text(alphabet=_LETTERS, min_size=1, max_size=3)  # invalid: under 5 characters


@st.composite
def cn_mobiles(draw: st.DrawFn) -> str:
    digits = f"1{draw(st.integers(3, 9))}{draw(st.integers(0, 10**9 - 1)):09d}"
    style = draw(st.sampled_from(["plain", "plus", "spaced", "dashed"]))
    if style == "plus":
        return f"+86{digits}"
    if style == "spaced":
        return f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}"
    if style == "dashed":
        return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
    return digits


invalid_phones = st.integers(10**8, 10**9 - 1).map(lambda n: f"0{n}")  # 10 digits from 0
phones = st.one_of(cn_mobiles(), cn_mobiles(), invalid_phones)


# --- an order's life ---------------------------------------------------------------------------


@st.composite
def order_lives(draw: st.DrawFn, n: int, pool: dict[str, Any], burst: bool = False) -> list[Event]:
    """One order with a random subset of its life, drawing people from shared pools so that
    addresses, phones and new accounts repeat across customers (the fraud rules see them)."""
    oid = f"O{n}"
    if burst:  # a new account's shopping spree: same customer, within the hour
        start, customer = draw(st.integers(0, 50)), "C0"
    else:
        start = draw(st.one_of(st.integers(0, 50), st.integers(0, 3 * 24 * 60)))
        customer = draw(st.sampled_from(pool["customers"]))
    addr = address(
        name=draw(st.sampled_from(pool["names"])),
        phone=draw(st.sampled_from(pool["phones"])),
        line1=draw(st.sampled_from(pool["streets"])),
        postal_code=draw(st.sampled_from(["200001", "2000", None])),
    )
    young = customer in pool["young"]
    remark = draw(st.sampled_from([None, "urgent please", "leave at the door"]))
    quantity = draw(st.sampled_from([1, 2, 25]))
    events: list[Event] = [
        created(
            oid,
            _at(start),
            customer_id=customer,
            customer_phone=draw(st.sampled_from(pool["phones"])),
            account_created_at=_at(start - 60) if young else "2024-01-01T00:00:00Z",
            shipping_address=addr,
            remark=remark,
            items=[{"sku": "SKU-1", "quantity": quantity, "unit_price": "199.00"}],
            total="199.00" if quantity == 1 else "0.00",
        )
    ]
    steps = draw(st.lists(st.integers(1, 600), min_size=0, max_size=5))
    t = start
    kinds = ["paid", "status", "shipped", "scanned", "exception", "address", "delivered"]
    for step in steps:
        t += step * draw(st.sampled_from([1, 10]))
        kind = draw(st.sampled_from(kinds))
        if kind == "paid":
            events.append(paid(oid, _at(t), amount=events[0]["total_amount"]))
        elif kind == "status":
            events.append(
                status(oid, draw(st.sampled_from(["paid", "shipped", "cancelled"])), _at(t))
            )
        elif kind == "exception":
            event = logistics("exception", oid, _at(t))
            event["kind"] = draw(st.sampled_from(["lost", "rejected", "address_unreachable"]))
            events.append(event)
        elif kind == "address":
            line = draw(st.one_of(st.sampled_from(pool["streets"]), short_streets))
            new = address(
                name=draw(st.sampled_from(pool["names"])),
                phone=draw(st.sampled_from(pool["phones"])),
                line1=line,
            )
            events.append(address_changed(oid, _at(t), shipping_address=new))
        else:
            events.append(logistics(kind, oid, _at(t)))
    return events


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Event], dict[str, Any]]:
    pool: dict[str, Any] = {
        "customers": [f"C{i}" for i in range(draw(st.integers(2, 6)))],
        "young": {"C0", "C2"},
        "names": draw(st.lists(names, min_size=1, max_size=4, unique=True)),
        "phones": draw(st.lists(phones, min_size=1, max_size=3, unique=True)),
        "streets": draw(st.lists(streets, min_size=1, max_size=3, unique=True)),
    }
    events: list[Event] = []
    for n in range(draw(st.integers(1, 9))):
        events += draw(order_lives(n, pool))
    if draw(st.booleans()):
        for n in range(100, 100 + draw(st.integers(4, 6))):
            events += draw(order_lives(n, pool, burst=True))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["phone", "customer_id", "address"]))
        if kind == "phone":
            value = draw(st.sampled_from(pool["phones"]))
        elif kind == "customer_id":
            value = draw(st.sampled_from(pool["customers"]))
        else:
            value = f"CN|Shanghai|Shanghai|Huangpu|{draw(st.sampled_from(pool['streets']))}"
        at = _at(draw(st.integers(-60, 3 * 24 * 60)))
        event = blacklist(kind, value, at=at, removed=draw(st.booleans()))
        events.insert(draw(st.integers(0, len(events))), event)
    # streams interleave and arrive late: sometimes the whole input is out of event-time order
    return draw(st.permutations(events)) if draw(st.booleans()) else events, pool


_CATALOG = load_catalog()  # loaded once: the rule files are the same for every example


def _output(events: list[Event]) -> list[bytes]:
    """The lines ``orderwatch replay --until UNTIL`` writes for ``events``."""
    out, err = io.BytesIO(), io.StringIO()
    until = datetime.fromisoformat(UNTIL)
    replay(io.BytesIO(to_jsonl(events)).readlines(), Engine(_CATALOG), out, err, until)
    assert err.getvalue() == ""
    return out.getvalue().splitlines()


def _rules(events: list[Event]) -> set[str]:
    return {orjson.loads(line)["rule_id"] for line in _output(events)}


# --- (a) re-delivery changes nothing -----------------------------------------------------------


@PROPERTY
@given(data=st.data(), history=histories())
def test_redelivering_any_subset_appended_changes_nothing(
    data: st.DataObject, history: tuple[list[Event], dict[str, Any]]
) -> None:
    events, _ = history
    again = data.draw(st.lists(st.sampled_from(events), max_size=len(events)), label="again")
    assert _output(events + again) == _output(events)


@PROPERTY
@given(data=st.data(), history=histories())
def test_redelivering_any_subset_interleaved_changes_nothing(
    data: st.DataObject, history: tuple[list[Event], dict[str, Any]]
) -> None:
    events, _ = history
    redelivered = list(events)
    picks = data.draw(
        st.lists(st.integers(0, len(events) - 1), max_size=len(events)), label="copies of"
    )
    for index in picks:
        original = redelivered.index(events[index])
        slot = data.draw(st.integers(original + 1, len(redelivered)), label="slot")
        redelivered.insert(slot, events[index])
    assert _output(redelivered) == _output(events)


# --- (b) no personal data in clear ------------------------------------------------------------


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


@PROPERTY
@given(history=histories())
def test_no_phone_street_or_name_appears_in_clear(
    history: tuple[list[Event], dict[str, Any]],
) -> None:
    events, pool = history
    text = b"\n".join(_output(events)).decode()
    squashed = "".join(c for c in text.casefold() if c.isalnum())
    for phone in pool["phones"]:
        assert phone not in text
        assert _digits(phone)[-10:] not in text, "at most the last 4 digits may show"
    secrets = {*pool["streets"], *pool["names"]}
    for event in events:
        if "shipping_address" in event:
            secrets |= {event["shipping_address"]["line1"], event["shipping_address"]["name"]}
    for secret in secrets:
        folded = "".join(c for c in secret.casefold() if c.isalnum())
        if len(folded) >= 5:  # shorter strings are too common to prove a leak
            assert secret not in text
            assert folded not in squashed, secret


def test_the_generated_histories_do_trigger_the_customer_and_fraud_rules() -> None:
    """Guard against a property that passes because nothing ever fires."""
    seen: set[str] = set()

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(history=histories())
    def collect(history: tuple[list[Event], dict[str, Any]]) -> None:
        seen.update(_rules(history[0]))

    collect()
    expected = {
        "customer.invalid_address",
        "customer.invalid_phone",
        "customer.unreachable",
        "customer.remark_attention",
        "fraud.abnormal_quantity",
        "fraud.shared_phone",
        "fraud.address_cluster",
        "fraud.new_account_burst",
        "fraud.blacklisted",
        "logistics.not_shipped",
    }
    assert expected <= seen, expected - seen


# --- (c) v2: commands are re-delivered too ----------------------------------------------------

_KINDS = ["acknowledge", "unacknowledge", "assign", "snooze", "comment", "resolve", "reopen"]


@st.composite
def with_commands(draw: st.DrawFn) -> list[Event]:
    """A history with operators' commands slipped in: on exceptions it raises (or on none),
    at some minutes after each was detected, with fields right or wrong for their type."""
    events, _ = draw(histories())
    raised = [orjson.loads(line) for line in _output(events)]
    raised = [e for e in raised if e["state"] in ("raised", "inhibited")]
    if not raised:
        return events
    mixed = list(events)
    for n in range(draw(st.integers(1, 12))):
        target = draw(st.sampled_from(raised))
        if draw(st.integers(0, 9)) == 0:
            target = {**target, "exception_id": "no-such-exception"}
        kind = draw(st.sampled_from(_KINDS))
        fields: dict[str, Any] = {}
        if kind == "assign":
            fields["assignee"] = draw(st.sampled_from(["bob", "", None]))
        elif kind == "snooze":
            fields["for"] = draw(st.sampled_from(["30m", "2h", "1d", "soon"]))
        elif kind == "comment":
            fields["note"] = draw(st.sampled_from(["call 13812345678", "ok", ""]))
        elif kind == "resolve":
            fields["resolution"] = draw(st.sampled_from(["fixed", "false_positive", "nope"]))
        if draw(st.booleans()):
            fields["expected_status"] = draw(st.sampled_from(["open", "acknowledged"]))
        when = plus(target["detected_at"], minutes=draw(st.integers(0, 600)))
        # mostly after the history (its exceptions exist by then), sometimes anywhere in it
        slot = len(mixed) if draw(st.integers(0, 3)) else draw(st.integers(0, len(mixed)))
        mixed.insert(slot, command(kind, target, when, event_id=f"cmd-{n}", **fields))
    return mixed


def _with_replies(events: list[Event]) -> tuple[list[bytes], dict[bytes, set[bytes]]]:
    """Exception lines, and every distinct reply each command got (one each, if idempotent)."""
    out, err, replies = io.BytesIO(), io.StringIO(), io.BytesIO()
    until = datetime.fromisoformat(UNTIL)
    replay(io.BytesIO(to_jsonl(events)).readlines(), Engine(_CATALOG), out, err, until, replies)
    assert err.getvalue() == ""
    by_command: dict[bytes, set[bytes]] = {}
    for line in replies.getvalue().splitlines():
        by_command.setdefault(orjson.loads(line)["command_id"].encode(), set()).add(line)
    return out.getvalue().splitlines(), by_command


@PROPERTY
@given(data=st.data(), events=with_commands())
def test_redelivering_events_and_commands_interleaved_changes_nothing(
    data: st.DataObject, events: list[Event]
) -> None:
    redelivered = list(events)
    picks = data.draw(
        st.lists(st.integers(0, len(events) - 1), max_size=len(events)), label="copies of"
    )
    for index in picks:
        original = redelivered.index(events[index])
        slot = data.draw(st.integers(original + 1, len(redelivered)), label="slot")
        redelivered.insert(slot, events[index])
    once, replies = _with_replies(events)
    again, replies_again = _with_replies(redelivered)
    assert again == once
    assert replies_again == replies
    assert all(len(r) == 1 for r in replies.values()), "a command read again: the same reply"
