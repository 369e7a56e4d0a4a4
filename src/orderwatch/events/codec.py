"""Bytes in, models out, and back: the single place where wire data becomes typed events.

Decoding never raises anything but ``EventValidationError`` so every caller (Faust agent, replay,
tests) can route bad input to a dead-letter path with a reason, instead of crashing on it. The
structural fuzz (``tests/unit/test_codec_fuzz.py``) holds it to that for every input type.

What the decoder decides where JSON itself leaves room (RFC 8259):

- ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON: refused (``invalid_json``) wherever they
  stand, even in a field we ignore, so a producer writing them shows up in the dead letters
  before a stricter consumer on the same bus chokes on them.
- A byte order mark is refused (``invalid_json``): the RFC forbids sending one.
- Nesting deeper than the parser's limit (a few hundred levels) is refused (``invalid_json``);
  the parser is iterative there, so no depth reaches Python's recursion limit.
- Duplicate keys: the last one wins, as in pydantic's parser, orjson and JavaScript.
- Integers of any size parse; the fields the engine reads accept 64-bit values only (the
  models' ``Int64``), so no count reaches the engine that its JSON encoder cannot write back.
- Messages larger than ``MAX_EVENT_BYTES`` are refused before parsing (``too_large``).

Every diagnosis is made by the same parser that validated (pydantic-core's), so the reason given
for a message is the reason it failed.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import from_json

from orderwatch.errors import EventValidationError
from orderwatch.events.actions import ACTION_RESULT_TYPES, ActionEvent
from orderwatch.events.commands import COMMAND_TYPES, CommandReply
from orderwatch.events.exception import ExceptionEvent
from orderwatch.events.fastpath import FAST_VALIDATOR
from orderwatch.events.inbound import EVENT_ADAPTER, EVENT_TYPES, InboundEvent

#: Larger messages are refused before parsing; the contract's events are a few KiB at most.
MAX_EVENT_BYTES = 256 * 1024
#: Reason of a decoder failure nobody foresaw: a bug of ours, never a verdict on the message.
INTERNAL = "internal_decode_error"

_KNOWN_TYPES = frozenset(EVENT_TYPES) | frozenset(COMMAND_TYPES) | frozenset(ACTION_RESULT_TYPES)
_BOM = b"\xef\xbb\xbf"
#: the first bytes of ``NaN`` and ``Infinity`` (``-Infinity`` holds the second)
_N, _I = ord("N"), ord("I")
_VALIDATE_JSON = EVENT_ADAPTER.validator.validate_json
_FAST_VALIDATE_JSON = FAST_VALIDATOR.validate_json
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def decode_event(raw: bytes | str) -> InboundEvent:
    """Parse one message into its event model, or raise ``EventValidationError`` with a reason.

    Nothing else escapes: a failure of the decoder itself (a bug) is reported as
    ``internal_decode_error`` with the exception's class, so the message is dead-lettered and
    the bug is visible instead of stopping whoever reads the stream.

    One function, not a wrapper around a helper: this runs for every message, and the call of a
    helper was a twentieth of a small event's decode (``bench/bench_decode.py``).
    """
    try:
        if type(raw) is not bytes:
            raw = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
        if len(raw) > MAX_EVENT_BYTES:
            raise EventValidationError(
                "too_large", f"message of {len(raw)} bytes exceeds {MAX_EVENT_BYTES} bytes"
            )
        try:
            # native checks only (``events.fastpath``): accepts nearly every valid message
            event: InboundEvent = _FAST_VALIDATE_JSON(raw)
        except ValidationError:
            try:
                # the models' own validator decides what the fast path refused, and words why
                # (the core validator itself: the adapter's wrapper only forwards its options)
                event = _VALIDATE_JSON(raw)
            except ValidationError as exc:
                raise _classify(raw, exc) from None
        # pydantic's parser reads these literals; JSON has none. A message without an "N" byte
        # cannot hold a NaN, one without an "I" no Infinity: a memchr scan each (an int operand;
        # a bytes one costs ~0.2 us more per test in CPython 3.11) settles most messages, a
        # substring search the others ("CNY" has an "N"), and the parse that tells a literal
        # from text that merely spells it runs only then.
        if (
            (_N in raw and raw.find(b"NaN") >= 0) or (_I in raw and raw.find(b"Infinity") >= 0)
        ) and _has_non_finite(raw):
            raise EventValidationError("invalid_json", "NaN or Infinity is not JSON (RFC 8259)")
        return event
    except EventValidationError:
        raise
    except Exception as exc:
        raise EventValidationError(INTERNAL, f"decoder failed: {type(exc).__name__}") from None


def _has_non_finite(raw: bytes) -> bool:
    try:
        from_json(raw, allow_inf_nan=False)
    except ValueError:
        return True
    return False


def _classify(raw: bytes, exc: ValidationError) -> EventValidationError:
    """Turn a pydantic failure into a reason code a dead-letter consumer can group by.

    The message is read again by pydantic-core's own parser (the one that just failed), never
    by another with other limits: orjson, for one, refuses integers beyond 64 bits that
    pydantic reads, and would call a schema error a JSON error.
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return EventValidationError("invalid_utf8", f"not UTF-8 at byte {err.start}")
    if raw.startswith(_BOM):
        return EventValidationError("invalid_json", "starts with a byte order mark (RFC 8259)")
    if not raw.strip():
        return EventValidationError("invalid_json", "empty message")
    try:
        data: Any = from_json(raw, allow_inf_nan=False)
    except ValueError as err:
        return EventValidationError("invalid_json", str(err)[:200])
    if not isinstance(data, dict):
        return EventValidationError("not_an_object", f"JSON {_json_type(data)}, not an object")
    kind = data.get("type")
    if not isinstance(kind, str):
        what = "missing" if "type" not in data else f"{_json_type(kind)}, not a string"
        return EventValidationError("unknown_type", f"event type {what}")
    if kind not in _KNOWN_TYPES:
        return EventValidationError("unknown_type", f"unknown event type {kind[:64]!r}")
    first = exc.errors(include_url=False, include_input=False, include_context=False)[:3]
    detail = "; ".join(
        f"{'.'.join(str(p)[:64] for p in err['loc'][1:]) or '<root>'}: {err['msg'][:200]}"
        for err in first
    )
    return EventValidationError("schema", f"{kind}: {detail}")


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def encode_exception(event: ExceptionEvent) -> bytes:
    """The JSON body published to the exceptions topic and printed by ``orderwatch replay``."""
    return orjson.dumps(event.model_dump(mode="json"))


def encode_reply(reply: CommandReply) -> bytes:
    """The JSON body of a command reply (CONTRACT section 8), on its topic and in replay."""
    return orjson.dumps(reply.model_dump(mode="json"))


def encode_action(event: ActionEvent) -> bytes:
    """The JSON body of an action event (CONTRACT section 10), on its topic and in replay."""
    return orjson.dumps(event.model_dump(mode="json"))
