"""JSON Schemas and the AsyncAPI document of the contract, generated from the models.

Generated rather than written so docs and code cannot disagree; a test fails when the committed
files under ``schemas/`` differ from what the models produce today.
"""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import TypeAdapter

from orderwatch.events.actions import ActionEvent
from orderwatch.events.commands import CommandReply
from orderwatch.events.exception import Evidence, ExceptionEvent
from orderwatch.events.inbound import InboundEvent
from orderwatch.events.kpis import KpiRecord
from orderwatch.settings import Settings

INPUT_SCHEMA = "input-event.schema.json"
EXCEPTION_SCHEMA = "exception-event.schema.json"
ASYNCAPI = "asyncapi.yaml"
REPLY_SCHEMA = "command-reply.schema.json"
ACTION_SCHEMA = "action-event.schema.json"
KPI_SCHEMA = "kpi-record.schema.json"


def generate() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every document under ``schemas/``."""
    inbound = TypeAdapter(InboundEvent).json_schema(mode="validation")
    inbound = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "orderwatch input event",
        "description": "One message on the orders, payment-callbacks, inventory, logistics, "
        "blacklist, order-exception-commands or order-action-results topics (CONTRACT sections "
        "1, 8 and 10). Unknown "
        "fields are allowed and ignored.",
        **inbound,
    }
    exception = ExceptionEvent.model_json_schema(mode="serialization")
    exception = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "One state change of a detected exception on the order-exceptions topic "
        "(CONTRACT section 2).",
        **exception,
    }
    reply = CommandReply.model_json_schema(mode="serialization")
    reply = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "The reply to one operator command on order-exception-command-results, "
        "keyed by exception_id (CONTRACT section 8). A command read again gets the same reply.",
        **reply,
    }
    action = ActionEvent.model_json_schema(mode="serialization")
    action = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "One status change of a remediation action on order-actions, keyed by "
        "order_id (CONTRACT section 10). Pass idempotency_key on to the executing API.",
        **action,
    }
    kpi = KpiRecord.model_json_schema(mode="serialization")
    kpi = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "One hourly KPI record on order-kpis (CONTRACT section 11): the numerator "
        "and denominator of one indicator for one value of its dimension (only that dimension's "
        "field is present).",
        **kpi,
    }
    return {
        INPUT_SCHEMA: inbound,
        KPI_SCHEMA: kpi,
        EXCEPTION_SCHEMA: exception,
        REPLY_SCHEMA: reply,
        ACTION_SCHEMA: action,
        ASYNCAPI: asyncapi(),
    }


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def render_file(name: str, document: dict[str, Any]) -> bytes:
    """The exact bytes of ``schemas/<name>``: YAML for the AsyncAPI document, JSON otherwise."""
    if name.endswith((".yaml", ".yml")):
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
        return text.encode("utf-8")
    return render(document)


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in generate().items():
        path = directory / name
        path.write_bytes(render_file(name, document))
        written.append(path)
    return written


# --- AsyncAPI 3.0 ------------------------------------------------------------------------------

#: Input streams: event type prefix -> (channel id, Settings field of its topic, Kafka key).
STREAMS: dict[str, tuple[str, str, str]] = {
    "order.": ("orders", "topic_orders", "order_id"),
    "payment.": ("paymentCallbacks", "topic_payments", "order_id"),
    "inventory.": ("inventory", "topic_inventory", "sku"),
    "logistics.": ("logistics", "topic_logistics", "order_id"),
    "blacklist.": ("blacklist", "topic_blacklist", "the entry value (compacted topic)"),
    "command.": ("operatorCommands", "topic_commands", "exception_id"),
    "action.": ("actionResults", "topic_action_results", "order_id"),
}

#: Header meanings; generation fails on a header the worker sets that is not described here.
HEADER_DOCS: dict[str, str] = {
    "__connect.errors.topic": "topic the bad message was read from",
    "__connect.errors.partition": "its partition (decimal)",
    "__connect.errors.offset": "its offset (decimal)",
    "__connect.errors.exception.class.name": "reason code: invalid_json, invalid_utf8, "
    "not_an_object, unknown_type, schema, too_large",
    "__connect.errors.exception.message": "human-readable detail, at most 1000 characters",
    "orderwatch.error.reason": "the reason code again, under orderwatch's own name",
    "orderwatch.error.original_size": "size in bytes of the original message (decimal); the "
    "payload may be truncated",
    "ce_specversion": "CloudEvents spec version, 1.0",
    "ce_id": "id of this state change (exception_id:state:escalation_level:seq): a dedupe key",
    "ce_type": "com.orderwatch.exception.<state>: raised, escalated, resolved, and (v2) "
    "inhibited, acknowledged, unacknowledged, assigned, snoozed, commented, reopened",
    "ce_source": "the detector instance that published it",
    "ce_subject": "the exception's subject (also the Kafka key)",
    "ce_time": "detected_at, RFC 3339",
    "content-type": "application/json",
}


def _package_version() -> str:
    try:
        return version("orderwatch")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "0.0.0"


def _headers_schema(names: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {n: {"type": "string", "description": HEADER_DOCS[n]} for n in names},
        "required": names,
    }


def _input_messages() -> dict[str, dict[str, Any]]:
    """One message per input event model, in contract order, pointing at its JSON Schema."""
    [union, *_] = typing.get_args(InboundEvent)
    messages = {}
    for model in typing.get_args(union):
        [event_type] = typing.get_args(model.model_fields["type"].annotation)
        stream = next(p for p in STREAMS if event_type.startswith(p))
        doc = (model.__doc__ or "").strip()
        messages[model.__name__] = {
            "name": event_type,
            "title": event_type,
            **({"summary": doc.splitlines()[0]} if doc else {}),
            "contentType": "application/json",
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"./{INPUT_SCHEMA}#/$defs/{model.__name__}"},
            },
            "bindings": {"kafka": {"key": {"type": "string", "description": STREAMS[stream][2]}}},
        }
    return messages


def _sample_exception() -> ExceptionEvent:
    """Any exception will do: only the names of the headers the worker sets are documented."""
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    return ExceptionEvent(
        exception_id="x",
        rule_id="x",
        category="system",
        severity="low",
        state="raised",
        subject="x",
        detected_at=epoch,
        event_time=epoch,
        summary="x",
        evidence=Evidence(event_ids=[]),
        owner="tech",
        actions=[],
        escalation_level=0,
    )


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document: what orderwatch reads, what it writes, and on which topics."""
    from orderwatch.agents.shell import DLQ_MAX_BYTES, cloudevent_headers, dlq_headers

    defaults = Settings.model_construct()
    inputs = _input_messages()
    ce_names = [n for n, _ in cloudevent_headers(_sample_exception(), "orderwatch")]
    dlq_names = [n for n, _ in dlq_headers("schema", "detail", "orders", 0, 0, 0)]

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for prefix, (channel, field, _key) in STREAMS.items():
        names = [n for n, m in inputs.items() if m["name"].startswith(prefix)]
        channels[channel] = {
            "address": getattr(defaults, field),
            "title": f"{prefix}* events",
            "description": f"Input: {prefix}* events (CONTRACT section 1). Topic name is "
            f"configurable: ORDERWATCH_{field.upper()}.",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        }
        operations[f"receive{channel[0].upper()}{channel[1:]}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{n}"} for n in names],
        }
    channels["orderExceptions"] = {
        "address": defaults.topic_exceptions,
        "title": "exception events",
        "description": "Output: one message per state change (raised, escalated, resolved) of a "
        "detected exception, keyed by subject (CONTRACT section 2). CloudEvents binary mode. "
        "Topic name is configurable: ORDERWATCH_TOPIC_EXCEPTIONS.",
        "messages": {"ExceptionEvent": {"$ref": "#/components/messages/ExceptionEvent"}},
    }
    channels["orderwatchDlq"] = {
        "address": defaults.topic_dlq,
        "title": "dead letters",
        "description": "Output: input messages that are not valid JSON or not valid events, with "
        "the reason in Kafka Connect style headers. Topic name is configurable: "
        "ORDERWATCH_TOPIC_DLQ.",
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
    }
    channels["commandResults"] = {
        "address": defaults.topic_command_results,
        "title": "command replies",
        "description": "Output: one reply per operator command (accepted, or the reason it was "
        "rejected, and the exception's status after it), keyed by exception_id (CONTRACT "
        "section 8). Topic name is configurable: ORDERWATCH_TOPIC_COMMAND_RESULTS.",
        "messages": {"CommandReply": {"$ref": "#/components/messages/CommandReply"}},
    }
    operations["sendCommandReplies"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/commandResults"},
        "messages": [{"$ref": "#/channels/commandResults/messages/CommandReply"}],
    }
    channels["orderActions"] = {
        "address": defaults.topic_actions,
        "title": "remediation actions",
        "description": "Output: one message per status change of a remediation action, keyed "
        "by order_id (CONTRACT section 10); executors act on status requested. Topic name is "
        "configurable: ORDERWATCH_TOPIC_ACTIONS.",
        "messages": {"ActionEvent": {"$ref": "#/components/messages/ActionEvent"}},
    }
    channels["orderKpis"] = {
        "address": defaults.topic_kpis,
        "title": "KPI records",
        "description": "Output: one record per key indicator, event-time UTC hour and dimension "
        "value, when the detector's clock passes the hour (CONTRACT section 11), keyed by kpi. "
        "Topic name is configurable: ORDERWATCH_TOPIC_KPIS.",
        "messages": {"KpiRecord": {"$ref": "#/components/messages/KpiRecord"}},
    }
    operations["sendKpis"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/orderKpis"},
        "messages": [{"$ref": "#/channels/orderKpis/messages/KpiRecord"}],
    }
    operations["sendActions"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/orderActions"},
        "messages": [{"$ref": "#/channels/orderActions/messages/ActionEvent"}],
    }
    operations["sendExceptions"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/orderExceptions"},
        "messages": [{"$ref": "#/channels/orderExceptions/messages/ExceptionEvent"}],
    }
    operations["sendDeadLetters"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/orderwatchDlq"},
        "messages": [{"$ref": "#/channels/orderwatchDlq/messages/DeadLetter"}],
    }
    messages = {
        **inputs,
        "ExceptionEvent": {
            "name": "exception",
            "title": "exception event",
            "contentType": "application/json",
            "headers": _headers_schema(ce_names),
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"./{EXCEPTION_SCHEMA}"},
            },
            "bindings": {
                "kafka": {"key": {"type": "string", "description": "the exception's subject"}}
            },
        },
        "CommandReply": {
            "name": "command-reply",
            "title": "command reply",
            "contentType": "application/json",
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"./{REPLY_SCHEMA}"},
            },
            "bindings": {"kafka": {"key": {"type": "string", "description": "exception_id"}}},
        },
        "KpiRecord": {
            "name": "kpi-record",
            "title": "KPI record",
            "contentType": "application/json",
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"./{KPI_SCHEMA}"},
            },
            "bindings": {"kafka": {"key": {"type": "string", "description": "kpi"}}},
        },
        "ActionEvent": {
            "name": "action",
            "title": "action event",
            "contentType": "application/json",
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"./{ACTION_SCHEMA}"},
            },
            "bindings": {"kafka": {"key": {"type": "string", "description": "order_id"}}},
        },
        "DeadLetter": {
            "name": "dead-letter",
            "title": "dead letter",
            "summary": f"The original message bytes, truncated to {DLQ_MAX_BYTES // 1024} KiB; "
            "the headers say why it was refused.",
            "contentType": "application/octet-stream",
            "headers": _headers_schema(dlq_names),
            "payload": {"type": "string", "format": "binary"},
            "bindings": {
                "kafka": {"key": {"type": "string", "description": "the original message key"}}
            },
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "orderwatch",
            "version": _package_version(),
            "description": "Streaming detector of e-commerce order exceptions: reads order, "
            "payment, inventory, logistics and blacklist events and operators' commands, "
            "publishes exception events and command replies. "
            "Generated from the models by `orderwatch schemas`; do not edit.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": defaults.bootstrap_servers,
                "protocol": "kafka",
                "description": "Any Kafka-compatible broker; set ORDERWATCH_BOOTSTRAP_SERVERS.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
