"""Rule directories for the override and calendar rule books: the shipped rules plus edits."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from orderwatch.rulefiles import default_rules_dir


def rules_dir(tmp: Path, edits: dict[str, dict[str, object]], calendar: str | None = None) -> Path:
    """A copy of ``rules/`` under ``tmp`` with ``edits`` merged into the named rule files
    (top-level keys replaced) and ``calendar`` as ``calendars.yaml``."""
    folder = tmp / "rules"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in default_rules_dir().glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    for rule_id, change in edits.items():
        path = folder / f"{rule_id}.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data.update(change)
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    if calendar is not None:
        (folder / "calendars.yaml").write_text(calendar, encoding="utf-8")
    return folder
