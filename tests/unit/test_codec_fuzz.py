"""Structural fuzz of the decoder: for any bytes, a valid event or ``EventValidationError``.

Start from a valid event of every input type (``SEEDS``), pick one place at any depth, and
replace it with a JSON value of any type (null, bool, integers far beyond 64 bits, floats, NaN
and Infinity literals, strings, arrays, objects, nesting thousands deep), delete it, or repeat
its key with another value. Properties:

- ``decode_event`` raises ``EventValidationError`` with a known reason, or returns an event;
- an event it returns is one the engine can take: routed, stepped, swept weeks later, every
  exception it gives encoded, every changed shard written as JSON (a value that passes the
  schema and then breaks the engine is the same bug one step later);
- ``orderwatch replay`` over valid events mixed with such lines reports each bad line with its
  number and gives exactly the exceptions of the valid events alone.

``make test`` runs a bounded number of examples; ``make fuzz`` runs 100,000 of the structural
property (``ORDERWATCH_FUZZ_EXAMPLES``). New input types (``command.*``) join by extending
``SEEDS``: the coverage test fails until every type of the contract has a seed.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderwatch.engine import Engine
from orderwatch.errors import EventValidationError
from orderwatch.events.actions import ACTION_RESULT_TYPES
from orderwatch.events.codec import decode_event, encode_exception
from orderwatch.events.commands import COMMAND_TYPES
from orderwatch.events.inbound import EVENT_TYPES
from orderwatch.replay import replay
from orderwatch.rulefiles import load_catalog
from tests.factories import (
    _event,
    address_changed,
    blacklist,
    command,
    created,
    creation_failed,
    logistics,
    paid,
    payment_failed,
    refunded,
    reservation_failed,
    reserved,
    snapshot,
    status,
    to_jsonl,
)

CATALOG = load_catalog()
#: the reasons a bad message may get; ``internal_decode_error`` is not one: it means a bug
REASONS = {"invalid_json", "invalid_utf8", "schema", "too_large", "unknown_type", "not_an_object"}

#: An exception as a command copies it (section 8): id, rule and subject.
_EXC = {"exception_id": "3f1c0c5e-1d2b-5c7a-9d41-0a1b2c3d4e5f", "rule_id": "payment.duplicate"}
_EXC["subject"] = "O1"

#: One valid event of every input type, the ``command.*`` (section 8) and ``action.*`` (section
#: 10) types included.
SEEDS: list[dict[str, Any]] = [
    created(
        "O1",
        "10:00",
        channel="app",
        remark="leave at the door",
        promised_delivery_by="2026-11-23T10:00:00Z",
        items=[
            {"sku": "SKU-1", "quantity": 1, "unit_price": "99.00"},
            {"sku": "SKU-2", "quantity": 2, "unit_price": "50.00"},
        ],
    ),
    status("O1", "paid", "10:05", previous_status="pending_payment"),
    address_changed("O1", "10:06"),
    creation_failed("10:07", order_id="O2", error_message="db timeout", customer_id="C1"),
    paid("O1", "10:01", method="card"),
    payment_failed("O1", "10:02"),
    refunded("O1", "11:00"),
    reserved("O1", "10:03"),
    reservation_failed("O1", "10:03"),
    _event(
        "inventory.released",
        "10:04",
        "wms",
        None,
        order_id="O1",
        sku="SKU-1",
        warehouse_id="WH1",
        quantity=1,
    ),
    snapshot("SKU-1", "10:05", 10, "wms", on_hand=12),
    logistics("shipped", "O1", "12:00"),
    logistics("scanned", "O1", "13:00", location="Shanghai", detail="arrived"),
    logistics("out_for_delivery", "O1", "14:00"),
    logistics("delivered", "O1", "15:00"),
    _event(
        "logistics.exception",
        "14:30",
        "carrier-sf",
        None,
        order_id="O1",
        tracking_no="TN-O1",
        carrier="carrier-sf",
        kind="address_unreachable",
        detail="no such street",
    ),
    blacklist("phone", "13800000000", "09:00", reason="fraud ring"),
    blacklist("phone", "13800000000", "09:30", removed=True),
    command("acknowledge", _EXC, "16:00", expected_status="open"),
    command("unacknowledge", _EXC, "16:01"),
    command("assign", _EXC, "16:02", assignee="bob"),
    command("snooze", _EXC, "16:03", for_="1d2h"),
    command("snooze", _EXC, "16:03", until="2026-11-23T10:00:00Z"),
    command("comment", _EXC, "16:04", note="called the customer, 13800001234"),
    command("resolve", _EXC, "16:05", resolution="false_positive", note="known"),
    command("reopen", _EXC, "16:06", note="came back"),
    command("approve", _EXC, "16:07", action_id="a1"),
    command("reject", _EXC, "16:08", action_id="a1"),
    _event("action.succeeded", "16:09", "oms", None, action_id="a1", order_id="O1"),
    _event("action.failed", "16:10", "oms", None, action_id="a1", order_id="O1", detail="503"),
]

EXAMPLES = int(os.environ.get("ORDERWATCH_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: the other properties are slower per example (an engine, a replay): a share of the budget
SMALL = settings(FUZZ, max_examples=max(20, EXAMPLES // 10))


# --- JSON documents with what ``json`` cannot write: duplicate keys, NaN, deep nesting --------


@dataclass(frozen=True)
class Deep:
    """Arrays nested ``depth`` levels."""

    depth: int


@dataclass(frozen=True)
class Obj:
    """An object as its list of members, so one key can appear twice."""

    members: tuple[tuple[str, Any], ...]


def tree(value: Any) -> Any:
    if isinstance(value, dict):
        return Obj(tuple((k, tree(v)) for k, v in value.items()))
    if isinstance(value, list):
        return [tree(v) for v in value]
    return value


def dump(node: Any) -> bytes:
    if isinstance(node, Obj):
        return b"{" + b",".join(orjson.dumps(k) + b":" + dump(v) for k, v in node.members) + b"}"
    if isinstance(node, list):
        return b"[" + b",".join(dump(v) for v in node) + b"]"
    if isinstance(node, Deep):
        return b"[" * node.depth + b"]" * node.depth
    if isinstance(node, float) and not math.isfinite(node):
        return b"NaN" if math.isnan(node) else (b"Infinity" if node > 0 else b"-Infinity")
    if isinstance(node, int) and not isinstance(node, bool):
        return str(node).encode()
    return orjson.dumps(node)


Path_ = tuple[Any, ...]


def paths(node: Any, here: Path_ = ()) -> list[Path_]:
    """Every place in the document: each member's value and each array element."""
    found = [here]
    if isinstance(node, Obj):
        for i, (_, value) in enumerate(node.members):
            found += paths(value, (*here, i))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += paths(value, (*here, i))
    return found


def mutate(node: Any, path: Path_, op: str, value: Any) -> Any:
    """``node`` with the place at ``path`` replaced, deleted or its key repeated."""
    if not path:
        return value if op == "replace" else node
    head, rest = path[0], path[1:]
    if isinstance(node, Obj):
        members = list(node.members)
        key, child = members[head]
        if rest:
            members[head] = (key, mutate(child, rest, op, value))
        elif op == "replace":
            members[head] = (key, value)
        elif op == "delete":
            del members[head]
        else:  # a duplicate key, before or after the original (last one wins)
            members.insert(head + (op == "duplicate_after"), (key, value))
        return Obj(tuple(members))
    items = list(node)
    if rest:
        items[head] = mutate(items[head], rest, op, value)
    elif op == "delete":
        del items[head]
    elif op == "replace":
        items[head] = value
    else:
        items.insert(head, value)
    return items


SPECIAL_STRINGS = [
    "",
    " ",
    "0",
    "-0",
    "1e999999999",
    "-1e-999999999",
    "NaN",
    "Infinity",
    "0.000000000000000000001",
    "99999999999999999999999999999.99",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-11-20T10:00:00Z",
    "2026-02-30T10:00:00Z",
    "2026-11-20T24:00:00Z",
    "2026-11-20T10:00:60Z",
    "order.created",
    "payment.succeeded",
    "blacklist.added",
    "customer_id",
    "phone",
    "address",
    "insufficient_stock",
    "paid",
    "cancelled",
    "x" * 300,
    "\u0000",
    "\ufeff",
    "𝒳",
]

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=2**63 - 2, max_value=2**200),
    st.integers(min_value=-(2**200), max_value=-(2**63) + 2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(SPECIAL_STRINGS),
)
json_values = st.one_of(
    st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.text(max_size=8), children, max_size=3).map(tree),
        ),
        max_leaves=6,
    ),
    st.integers(min_value=2, max_value=5000).map(Deep),
)
OPS = ["replace", "replace", "replace", "delete", "duplicate_before", "duplicate_after"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    seed = tree(draw(st.sampled_from(SEEDS)))
    path = draw(st.sampled_from(paths(seed)))
    return dump(mutate(seed, path, draw(st.sampled_from(OPS)), draw(json_values)))


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid event's bytes cut, with a byte changed, or behind a BOM; or any bytes."""
    raw = orjson.dumps(draw(st.sampled_from(SEEDS)))
    kind = draw(st.sampled_from(["cut", "byte", "bom", "any"]))
    at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
    if kind == "cut":
        return raw[:at]
    if kind == "byte":
        return raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    if kind == "bom":
        return b"\xef\xbb\xbf" + raw
    return draw(st.binary(max_size=200))


def check(raw: bytes) -> bool:
    """The decoder's contract on one input; True when it gave an event."""
    try:
        event = decode_event(raw)
    except EventValidationError as exc:
        reason, detail = exc.reason, exc.detail
        assert reason in REASONS, (reason, detail, raw[:300])
        return False
    # an event it lets through must not surprise the engine either
    Engine.route(event)
    engine = Engine(CATALOG)
    out = engine.step(event, event.occurred_ts)
    out += engine.sweep(event.occurred_ts + 40 * 86400)
    for exc in out:
        encode_exception(exc)
    for state in engine.take_dirty().values():
        orjson.dumps(state)
    return True


def test_the_seeds_cover_every_input_type_and_are_valid() -> None:
    assert {s["type"] for s in SEEDS} >= set(EVENT_TYPES) | set(COMMAND_TYPES) | set(
        ACTION_RESULT_TYPES
    )
    for seed in SEEDS:
        assert check(orjson.dumps(seed)), seed["type"]
        assert dump(tree(seed)) == orjson.dumps(seed), "the fuzz writes JSON as orjson does"


@FUZZ
@given(mutated())
def test_a_structurally_mutated_event_decodes_or_is_refused_with_a_reason(raw: bytes) -> None:
    check(raw)


@SMALL
@given(damaged())
def test_damaged_bytes_decode_or_are_refused_with_a_reason(raw: bytes) -> None:
    check(raw)


@SMALL
@given(mutated())
def test_a_str_input_is_judged_as_its_utf8_bytes(raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        by_bytes: Any = decode_event(raw)
    except EventValidationError as exc:
        by_bytes = exc.reason
    try:
        by_text: Any = decode_event(text)
    except EventValidationError as exc:
        by_text = exc.reason
    assert by_text == by_bytes


WORST = [
    b"",
    b"   ",
    b"\xef\xbb\xbf" + orjson.dumps(SEEDS[0]),
    orjson.dumps({**SEEDS[1], "type": ["order.status_changed"]}),
    orjson.dumps({**SEEDS[1], "type": {"order": "status_changed"}}),
    orjson.dumps(SEEDS[1])[:-1] + b',"type":["order.status_changed"]}',
    orjson.dumps(SEEDS[1])[:-1] + b',"extra":NaN}',
    orjson.dumps(SEEDS[1])[:-1] + b',"extra":-Infinity}',
    orjson.dumps(SEEDS[1])[:-1] + b',"extra":' + b"[" * 5000 + b"]" * 5000 + b"}",
    orjson.dumps(SEEDS[1])[:-1] + b',"extra":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
    orjson.dumps(SEEDS[7]).replace(b'"quantity":1', b'"quantity":' + b"9" * 4000),
    orjson.dumps(SEEDS[1]).replace(b"oms", b"o\xffs"),
    b'{"type":"order.created","pad":"' + b"x" * 10_000_000 + b'"}',
    b"[" * 100_000,
    b"null",
    b"123456789012345678901234567890",
]


def test_the_cases_the_issue_names_are_refused_with_a_reason() -> None:
    for raw in WORST:
        assert not check(raw), raw[:80]


# --- replay: bad lines reported by number, the valid ones' exceptions exactly -------------------

VALID_DAY = [
    created("O1", "10:00"),
    paid("O1", "10:01"),
    created("O2", "10:02", customer_id="C2"),
    paid("O2", "10:03", payment_id="P2"),
    paid("O2", "10:04", payment_id="P3"),
    status("O1", "paid", "10:30"),
    reserved("O2", "10:05"),
    reservation_failed("O3", "10:06"),
    snapshot("SKU-1", "10:07", 0, "wms"),
    logistics("shipped", "O1", "12:00"),
]


def replayed(lines: list[bytes]) -> tuple[bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    replay(lines, Engine(CATALOG), out, err, until=None)
    return out.getvalue(), err.getvalue()


def refused(raw: bytes) -> bool:
    try:
        decode_event(raw)
    except EventValidationError:
        return True
    return False


@SMALL
@given(
    st.lists(st.one_of(mutated(), damaged(), st.sampled_from(WORST[:-4])), max_size=6),
    st.randoms(use_true_random=False),
)
def test_replay_reports_each_bad_line_and_gives_the_valid_lines_exceptions(
    bad: list[bytes], rnd: Any
) -> None:
    valid = [orjson.dumps(e) for e in VALID_DAY]
    # only lines the decoder refuses are bad (a mutation may well be another valid event),
    # and one line each: a newline inside would split it
    bad = [b for b in bad if b"\n" not in b and b"\r" not in b and refused(b)]
    lines = list(valid)
    for b in bad:
        lines.insert(rnd.randint(0, len(lines)), b)
    expected, _ = replayed([v + b"\n" for v in valid])
    got, err = replayed([line + b"\n" for line in lines])
    assert got == expected
    numbers = [int(line.split(":")[0].split()[1]) for line in err.splitlines()]
    assert numbers == [i + 1 for i, line in enumerate(lines) if line in bad and line not in valid]


def test_the_replay_command_exits_0_over_a_file_of_the_worst_lines(tmp_path: Path) -> None:
    valid = to_jsonl(VALID_DAY).splitlines()
    lines = [line for pair in zip(valid, WORST[:10], strict=False) for line in pair]
    lines += valid[10:]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(to_jsonl(VALID_DAY))

    def run(file: Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "orderwatch.cli", "replay", str(file)],
            capture_output=True,
            timeout=120,
            check=False,
        )

    mixed, expected = run(path), run(clean)
    assert mixed.returncode == 0, mixed.stderr[-2000:]
    assert mixed.stdout == expected.stdout and expected.stdout
    reported = [line.split(b":")[0] for line in mixed.stderr.splitlines()]
    bad_numbers = [i + 1 for i, line in enumerate(lines) if line not in valid]
    assert reported == [f"line {n}".encode() for n in bad_numbers]
