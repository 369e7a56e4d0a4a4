"""Hot reload of the rules directory: a changed, valid rule set runs without a restart.

The worker polls the directory (a hash of its YAML files' names and bytes, every
``ORDERWATCH_RULES_RELOAD_INTERVAL`` seconds; no file-watching dependency, and it works the same
on a ConfigMap volume, whose files change through a symlink swap) and reloads at once on SIGHUP.
A new set is loaded and validated whole (``load_catalog``): if any file is invalid the whole set
is refused, logged and counted, and the set already running keeps running. A valid one is handed
to every engine of this worker with ``Engine.set_rules``; the reload runs as a task of the
worker's event loop, and the shell processes a batch without awaiting, so a set is swapped
between batches, never inside one.

``orderwatch_rules_version_info{version}`` says which set each worker runs; an alert fires when
workers disagree for long (a worker that refused a set its peers took).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from orderwatch.errors import RuleFileError
from orderwatch.metrics import Metrics
from orderwatch.rulefiles import Catalog, default_rules_dir, load_catalog, rules_version

log = logging.getLogger("orderwatch.rules")

Outcome = Literal["unchanged", "applied", "refused"]


class RulesReloader:
    """Watches one rules directory and applies each valid new version with ``apply``."""

    def __init__(
        self,
        folder: Path | str | None,
        current: Catalog,
        apply: Callable[[Catalog], Awaitable[None] | None],
        metrics: Metrics,
        interval: float = 5.0,
    ) -> None:
        self.folder = Path(folder) if folder is not None else default_rules_dir()
        self.current = current
        self.apply = apply
        self.metrics = metrics
        self.interval = interval
        #: the last version looked at (applied or refused): a refused set is not retried until
        #: the files change again or SIGHUP asks
        self.seen = current.version
        self._next = current
        self._wake = asyncio.Event()
        #: set once ``run`` listens for SIGHUP
        self.listening = asyncio.Event()
        self._show(current.version)

    def _show(self, version: str) -> None:
        info = self.metrics.rules_version
        info.clear()
        info.labels(version=version).set(1)

    def check(self, force: bool = False) -> Outcome:
        """Look at the directory once; load, validate and apply a changed set (``apply``
        must then be synchronous: ``run`` awaits an asynchronous one)."""
        outcome, pending = self._check(force)
        if pending is not None:
            raise TypeError("an asynchronous apply needs run() or check_async()")
        return outcome

    async def check_async(self, force: bool = False) -> Outcome:
        outcome, pending = self._check(force)
        if pending is not None:
            await pending
            self._applied()
        return outcome

    def _check(self, force: bool) -> tuple[Outcome, Awaitable[None] | None]:
        try:
            version = rules_version(self.folder)
        except OSError as exc:  # the directory itself is gone: keep running what we have
            log.error("rules directory unreadable, keeping version %s: %s", self.seen, exc)
            self.metrics.rules_reloads.labels(result="refused").inc()
            return "refused", None
        if version == self.seen and not force:
            return "unchanged", None
        self.seen = version
        try:
            catalog = load_catalog(self.folder)
        except RuleFileError as exc:
            log.error(
                "rules version %s refused, still running %s: %s",
                version,
                self.current.version,
                exc,
            )
            self.metrics.rules_reloads.labels(result="refused").inc()
            return "refused", None
        if catalog.version == self.current.version:
            return "unchanged", None
        self._next = catalog
        result = self.apply(catalog)
        if inspect.isawaitable(result):
            return "applied", result
        self._applied()
        return "applied", None

    def _applied(self) -> None:
        catalog = self._next
        log.info("rules version %s applied (was %s)", catalog.version, self.current.version)
        self.current = catalog
        self.seen = catalog.version
        self._show(catalog.version)
        self.metrics.rules_reloads.labels(result="applied").inc()

    def request(self) -> None:
        """SIGHUP: check now, and retry a set refused before."""
        self._wake.set()

    async def run(self) -> None:
        """Poll every ``interval`` seconds (0: only on SIGHUP) until cancelled."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.request)
        self.listening.set()
        while True:
            timeout = self.interval if self.interval > 0 else None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            forced = self._wake.is_set()
            self._wake.clear()
            try:
                await self.check_async(force=forced)
            except Exception:  # never let the watcher die: the worker would lose hot reload
                log.exception("rules reload failed; keeping version %s", self.current.version)
                self.metrics.rules_reloads.labels(result="refused").inc()


def for_worker(worker: Any) -> RulesReloader:
    """The reloader of a ``Worker``: a new set goes to every engine it holds, to the engines it
    creates later (a partition assigned after the reload) and to the source-silence monitor."""

    async def apply(catalog: Catalog) -> None:
        worker.catalog = catalog  # the shell's engine factory reads it from now on
        rules = dict(catalog)
        silence = worker.shell.silence
        if silence is not None:
            silence.rules = rules
            silence.life.rules = rules
        for partition in list(worker.shell.engines):
            engine = worker.shell.engines.get(partition)
            if engine is not None:  # (revoked meanwhile: its next owner builds it anew)
                engine.set_rules(rules)
            # one partition at a time, batches in between: re-deriving the deadlines of a
            # partition's orders costs a few microseconds each (docs/operations.md)
            await asyncio.sleep(0)

    return RulesReloader(
        worker.settings.rules_dir,
        worker.catalog,
        apply,
        worker.metrics,
        worker.settings.rules_reload_interval,
    )
