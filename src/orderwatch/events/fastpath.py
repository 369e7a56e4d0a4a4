"""The inbound union validated by pydantic-core alone: a fast path in front of the models' own.

Why: the models check a timestamp, an amount and a currency with Python functions
(``BeforeValidator``), and a call out of pydantic-core per such field was a quarter of a decode
(``bench/bench_decode.py``: every event has a timestamp; an order has one amount per item).
pydantic-core's own strict string with a pattern does the common case without leaving Rust, but
it cannot word its errors as the Python checks do, and those words are the dead-letter reasons'
detail. So this validator only ever *accepts*:

- it is the union of ``inbound.EVENT_ADAPTER`` with each Python check replaced by a native one
  that accepts a subset of the strings the Python check accepts and yields the same value
  (``_NATIVE``); the models, their classes and every other field are the same schema;
- so a message it accepts, the models accept, giving an equal event of the same class;
- a message it refuses is validated again by the models' own validator, whose verdict and
  errors are the ones reported (``codec.decode_event``): a refused message costs two
  validations, and gets exactly the reason it got before this path existed.

``tests/unit/test_fastpath.py`` holds both paths to that over the structural fuzz.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

from pydantic_core import SchemaValidator, core_schema

from orderwatch.events import inbound
from orderwatch.events.inbound import EVENT_ADAPTER


def _pattern(shape: str) -> core_schema.CoreSchema:
    """A JSON string that is ``shape`` whole (pydantic-core searches, hence the anchors)."""
    return core_schema.str_schema(strict=True, pattern=f"^(?:{shape})$")


def _timestamp(inner: core_schema.CoreSchema) -> core_schema.CoreSchema:
    # ``_rfc3339`` returns such a string as it is, for the same datetime schema to parse
    return core_schema.chain_schema([_pattern(inbound.RFC3339_IN_YEARS), inner])


def _money(inner: core_schema.CoreSchema) -> core_schema.CoreSchema:
    # ``_money`` gives ``Decimal(text)`` for such a string; the decimal schema makes the same
    return core_schema.chain_schema([_pattern(inbound.MONEY_SHAPE), inner])


def _currency(inner: core_schema.CoreSchema) -> core_schema.CoreSchema:
    # ``_currency`` returns such a code unchanged (interned there; here it is the parser's
    # cached string, shared by the messages that carry it but for the cache's evictions)
    if inner != {"type": "str"}:
        raise TypeError(f"currency's schema changed: {inner!r}")
    return _pattern(inbound.CURRENCY_SHAPE)


_Replace: TypeAlias = Callable[[core_schema.CoreSchema], core_schema.CoreSchema]

#: Python check of the models -> its native subset, given the schema the check feeds
_NATIVE: dict[Callable[[object], object], _Replace] = {
    inbound._rfc3339: _timestamp,
    inbound._money: _money,
    inbound._currency: _currency,
}


def _native(node: Any) -> Any:
    """A copy of a core schema with each Python check of ``_NATIVE`` replaced (the rest kept)."""
    if isinstance(node, list):
        return [_native(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "function-before":
        replace = _NATIVE.get(node["function"]["function"])
        if replace is not None:
            return replace(_native(node["schema"]))
    return {key: _native(value) for key, value in node.items()}


def _models(node: Any) -> Iterator[type]:
    if isinstance(node, list):
        for item in node:
            yield from _models(item)
    elif isinstance(node, dict):
        if node.get("type") == "model":
            yield node["cls"]
        for value in node.values():
            yield from _models(value)


@contextmanager
def _built_from_schema(classes: set[type]) -> Iterator[None]:
    """pydantic-core builds a model it meets in a schema from the class's own validator when the
    class is complete (``__pydantic_complete__``), ignoring the schema given: for the duration
    of the build, the classes say they are not, so the schema here is the one built."""
    was = {cls: cls.__dict__.get("__pydantic_complete__") for cls in classes}
    for cls in classes:
        type.__setattr__(cls, "__pydantic_complete__", False)
    try:
        yield
    finally:
        for cls, complete in was.items():
            type.__setattr__(cls, "__pydantic_complete__", complete)


def _build() -> SchemaValidator:
    schema = EVENT_ADAPTER.core_schema
    with _built_from_schema(set(_models(schema))):
        return SchemaValidator(_native(schema))


#: ``validate_json`` of the fast path: an event, or ``ValidationError`` (then ask the models)
FAST_VALIDATOR = _build()

__all__ = ["FAST_VALIDATOR"]
