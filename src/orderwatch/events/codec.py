"""Bytes in, models out, and back: the single place where wire data becomes typed events.

Decoding never raises anything but ``EventValidationError`` so every caller (Faust agent, replay,
tests) can route bad input to a dead-letter path with a reason, instead of crashing on it.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from orderwatch.errors import EventValidationError
from orderwatch.events.actions import ACTION_RESULT_TYPES, ActionEvent
from orderwatch.events.commands import COMMAND_TYPES, CommandReply
from orderwatch.events.exception import ExceptionEvent
from orderwatch.events.inbound import EVENT_ADAPTER, EVENT_TYPES, InboundEvent

#: Larger messages are refused before parsing; the contract's events are a few KiB at most.
MAX_EVENT_BYTES = 256 * 1024

_KNOWN_TYPES = frozenset(EVENT_TYPES) | frozenset(COMMAND_TYPES) | frozenset(ACTION_RESULT_TYPES)


def decode_event(raw: bytes | str) -> InboundEvent:
    """Parse one message into its event model, or raise ``EventValidationError`` with a reason."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventValidationError(
            "too_large", f"message of {len(raw)} bytes exceeds {MAX_EVENT_BYTES} bytes"
        )
    try:
        # the core validator itself: the adapter's wrapper only forwards its default options
        return EVENT_ADAPTER.validator.validate_json(raw)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise _classify(raw, exc) from None


def _classify(raw: bytes, exc: ValidationError) -> EventValidationError:
    """Turn a pydantic failure into a reason code a dead-letter consumer can group by."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return EventValidationError("invalid_utf8", f"not UTF-8 at byte {err.start}")
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        return EventValidationError("invalid_json", str(err))
    if not isinstance(data, dict):
        return EventValidationError("not_an_object", f"JSON {type(data).__name__}, not an object")
    kind = data.get("type")
    if kind not in _KNOWN_TYPES:
        return EventValidationError("unknown_type", f"unknown event type {str(kind)[:64]!r}")
    first = exc.errors(include_url=False, include_input=False)[:3]
    detail = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'][1:]) or '<root>'}: {err['msg']}" for err in first
    )
    return EventValidationError("schema", f"{kind}: {detail}")


def encode_exception(event: ExceptionEvent) -> bytes:
    """The JSON body published to the exceptions topic and printed by ``orderwatch replay``."""
    return orjson.dumps(event.model_dump(mode="json"))


def encode_reply(reply: CommandReply) -> bytes:
    """The JSON body of a command reply (CONTRACT section 8), on its topic and in replay."""
    return orjson.dumps(reply.model_dump(mode="json"))


def encode_action(event: ActionEvent) -> bytes:
    """The JSON body of an action event (CONTRACT section 10), on its topic and in replay."""
    return orjson.dumps(event.model_dump(mode="json"))
