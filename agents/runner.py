"""Start the worker without Faust's CLI, so no web server or table endpoint is ever exposed."""

from __future__ import annotations

import logging

import faust

from orderwatch.agents.app import Worker
from orderwatch.settings import Settings


def run_worker(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level)
    worker = Worker(settings)
    faust.Worker(worker.app, loglevel=settings.log_level.lower()).execute_from_commandline()
