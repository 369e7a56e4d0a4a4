"""Logs are JSON lines a shipper can parse, and phone-shaped text never leaves in clear."""

from __future__ import annotations

import io
import logging

import orjson
import structlog

from orderwatch.logs import configure


def test_stdlib_and_structlog_records_become_redacted_json_lines() -> None:
    handler = configure("json", "INFO")
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("faust.some.library").warning("bad body {'phone': '138-1234-5678'}")
    structlog.get_logger("orderwatch.test").info("routed", note="call +8613812345678", offset=42)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"][:8] for line in lines] == ["bad body", "routed"]
    text = stream.getvalue()
    assert "1234-5678" not in text and "13812345678" not in text
    assert "*******5678" in text
    assert lines[1]["offset"] == 42 and lines[1]["level"] == "info"
    assert lines[0]["logger"] == "faust.some.library" and "timestamp" in lines[0]
