"""The committed ``schemas/`` match the models, and the AsyncAPI document's references all land."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from orderwatch.events.actions import ACTION_RESULT_TYPES
from orderwatch.events.commands import COMMAND_TYPES
from orderwatch.events.inbound import EVENT_TYPES
from orderwatch.schemas import ASYNCAPI, generate, render_file

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
GENERATED = generate()


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_committed_file_is_what_the_models_generate(name: str) -> None:
    path = SCHEMAS / name
    assert path.is_file(), f"schemas/{name} missing: run `orderwatch schemas`"
    assert path.read_bytes() == render_file(name, GENERATED[name]), (
        f"schemas/{name} is out of date with the models: run `orderwatch schemas` and commit"
    )


def test_every_generated_file_is_committed_and_nothing_stale_is_left() -> None:
    committed = {p.name for p in SCHEMAS.iterdir() if p.is_file()}
    assert committed == set(GENERATED)


def load(name: str) -> Any:
    text = (SCHEMAS / name).read_bytes()
    return yaml.safe_load(text) if name.endswith(".yaml") else orjson.loads(text)


def pointer(document: Any, fragment: str) -> Any:
    node = document
    for part in filter(None, fragment.split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_asyncapi_references_resolve_internally_and_into_the_schema_files() -> None:
    doc = load(ASYNCAPI)
    found = refs(doc)
    assert found
    for ref in found:
        target, _, fragment = ref.partition("#")
        document = doc if not target else load(target.removeprefix("./"))
        try:
            pointer(document, fragment)
        except (KeyError, TypeError):
            pytest.fail(f"unresolved $ref {ref}")


def test_asyncapi_covers_every_topic_and_event_type() -> None:
    doc = load(ASYNCAPI)
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {
        "orders",
        "payment-callbacks",
        "inventory",
        "logistics",
        "blacklist",
        "order-exceptions",
        "orderwatch-dlq",
        "order-exception-commands",
        "order-exception-command-results",
        "order-actions",
        "order-action-results",
        "order-kpis",
    }
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert set(EVENT_TYPES) <= names
    assert set(COMMAND_TYPES) <= names
    assert set(ACTION_RESULT_TYPES) <= names
    messages = doc["components"]["messages"]
    for channel in doc["channels"].values():
        for ref in channel["messages"].values():
            name = messages[ref["$ref"].rsplit("/", 1)[1]]["name"]
            if name in EVENT_TYPES or name in COMMAND_TYPES or name in ACTION_RESULT_TYPES:
                assert channel["title"].startswith(name.split(".")[0] + "."), (name, channel)


def test_dead_letter_headers_are_documented() -> None:
    doc = load(ASYNCAPI)
    headers = doc["components"]["messages"]["DeadLetter"]["headers"]["properties"]
    assert {
        "__connect.errors.topic",
        "__connect.errors.partition",
        "__connect.errors.offset",
        "__connect.errors.exception.class.name",
        "__connect.errors.exception.message",
    } <= set(headers)
    assert all(h["description"] for h in headers.values())
