"""The rules watcher: a valid changed set is applied, an invalid one refused whole and counted."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from orderwatch.agents.reload import RulesReloader
from orderwatch.metrics import Metrics
from orderwatch.rulefiles import Catalog, load_catalog
from tests.unit.tuning.books import rules_dir

RULE = "logistics.not_shipped"


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _edit(folder: Path, threshold: str) -> None:
    path = folder / f"{RULE}.yaml"
    text = path.read_text(encoding="utf-8")
    lines = [
        f"  threshold: {threshold}" if line.startswith("  threshold:") else line
        for line in text.splitlines()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_valid_applied_invalid_refused_and_the_old_set_kept(tmp_path: Path) -> None:
    folder = rules_dir(tmp_path, {})
    applied: list[Catalog] = []
    metrics = Metrics()
    first = load_catalog(folder)
    watcher = RulesReloader(folder, first, applied.append, metrics, interval=1)
    assert watcher.check() == "unchanged"
    assert _samples(metrics)[("orderwatch_rules_version_info", (("version", first.version),))] == 1

    _edit(folder, "24h")
    assert watcher.check() == "applied"
    [new] = applied
    assert new[RULE].params.threshold == 24 * 3600 and new.version != first.version
    samples = _samples(metrics)
    assert samples[("orderwatch_rules_version_info", (("version", new.version),))] == 1
    assert ("orderwatch_rules_version_info", (("version", first.version),)) not in samples

    _edit(folder, "tomorrow")
    assert watcher.check() == "refused"
    assert watcher.check() == "unchanged", "a refused set is not retried until it changes"
    assert applied == [new] and watcher.current is new
    samples = _samples(metrics)
    assert samples[("orderwatch_rules_reloads_total", (("result", "refused"),))] == 1
    assert samples[("orderwatch_rules_reloads_total", (("result", "applied"),))] == 1
    assert samples[("orderwatch_rules_version_info", (("version", new.version),))] == 1

    _edit(folder, "36h")
    assert watcher.check() == "applied"
    assert applied[-1][RULE].params.threshold == 36 * 3600


async def test_sighup_reloads_at_once(tmp_path: Path) -> None:
    folder = rules_dir(tmp_path, {})
    applied: list[Catalog] = []
    done = asyncio.Event()

    def apply(catalog: Catalog) -> None:
        applied.append(catalog)
        done.set()

    watcher = RulesReloader(folder, load_catalog(folder), apply, Metrics(), interval=0)
    task = asyncio.create_task(watcher.run())
    try:
        async with asyncio.timeout(5):
            await watcher.listening.wait()
        _edit(folder, "12h")
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(5):
            await done.wait()
        assert applied[0][RULE].params.threshold == 12 * 3600
    finally:
        task.cancel()
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
