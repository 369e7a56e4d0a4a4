"""Test-only faults for worker processes started by the integration tests (never installed).

Python imports ``sitecustomize`` at start-up from the path; the containment tests put this
directory on ``PYTHONPATH`` of the worker processes they start, with one of:

- ``ORDERWATCH_TEST_FAULT_STEP=<prefix>``: the engine raises on events whose id starts with
  the prefix, *after* applying them to their shard (the half-applied case);
- ``ORDERWATCH_TEST_FAULT_CRASH_ONCE=<flag file>``: the first envelope holding an event whose
  id starts with ``crash-`` raises outside the per-message containment (a bug in the shell
  itself), once: the flag file remembers it across the restart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_STEP = os.environ.get("ORDERWATCH_TEST_FAULT_STEP")
_CRASH_ONCE = os.environ.get("ORDERWATCH_TEST_FAULT_CRASH_ONCE")

if _STEP:
    from orderwatch.engine.core import Engine

    _apply = Engine._apply

    def _failing_apply(self: Engine, shard: Any, event: Any, at: float) -> None:
        _apply(self, shard, event, at)
        if event.event_id.startswith(_STEP):
            raise RuntimeError(f"test fault on {event.event_id} for phone 13812345678")

    Engine._apply = _failing_apply  # type: ignore[method-assign]

if _CRASH_ONCE:
    from orderwatch.agents import envelope

    _unpack = envelope.unpack
    _flag = Path(_CRASH_ONCE)

    def _crashing_unpack(data: bytes) -> Any:
        if b'"event_id":"crash-' in data and not _flag.exists():
            _flag.write_text("crashed once\n")
            raise RuntimeError("test fault: a bug outside the per-message containment")
        return _unpack(data)

    envelope.unpack = _crashing_unpack
