"""JSON Schemas of the contract, generated from the models so docs and code cannot disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from orderwatch.events.exception import ExceptionEvent
from orderwatch.events.inbound import InboundEvent


def generate() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every document under ``schemas/``."""
    inbound = TypeAdapter(InboundEvent).json_schema(mode="validation")
    inbound = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "orderwatch input event",
        "description": "One message on the orders, payment-callbacks, inventory, logistics or "
        "blacklist topics (CONTRACT section 1). Unknown fields are allowed and ignored.",
        **inbound,
    }
    exception = ExceptionEvent.model_json_schema(mode="serialization")
    exception = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "One state change of a detected exception on the order-exceptions topic "
        "(CONTRACT section 2).",
        **exception,
    }
    return {"input-event.schema.json": inbound, "exception-event.schema.json": exception}


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in generate().items():
        path = directory / name
        path.write_bytes(render(schema))
        written.append(path)
    return written
