"""Start the worker without Faust's CLI, so no web server or table endpoint is ever exposed."""

from __future__ import annotations

import faust

from orderwatch.agents.app import Worker
from orderwatch.heap import tune_allocator, tune_collector
from orderwatch.logs import configure
from orderwatch.settings import Settings


def run_worker(settings: Settings | None = None) -> None:
    conf = settings or Settings()
    configure(conf.log_format, conf.log_level)

    class _Worker(faust.Worker):
        def _setup_logging(self) -> None:
            """Keep our structured, redacting handler instead of mode's colour console."""
            configure(conf.log_format, conf.log_level)

    tune_collector()
    tune_allocator()  # large buffers in mappings of their own: a backlog's go back at once
    worker = Worker(conf)
    worker.membership.end_previous()  # before the consumer joins (agents/membership.py)
    _Worker(worker.app, loglevel=conf.log_level.lower()).execute_from_commandline()
