"""The pure rule engine (functional core): events and a clock in, exception events out.

Nothing under this package imports Kafka, Faust or Prometheus, reads the wall clock or sleeps;
``tests/unit/test_architecture.py`` and the import-linter contract in ``pyproject.toml`` hold that.
"""

from orderwatch.engine.clock import ReplayClock
from orderwatch.engine.core import BROADCAST, Engine

__all__ = ["BROADCAST", "Engine", "ReplayClock"]
