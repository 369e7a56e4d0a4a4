"""docs/configuration.md lists exactly the settings the model has, with their defaults."""

from __future__ import annotations

from pydantic import Field

from orderwatch.configdoc import PAGE, env_name, settings_table, table_in
from orderwatch.settings import Settings

REGENERATE = "run `python -m orderwatch.configdoc` and commit docs/configuration.md"


def test_page_table_is_the_model_table() -> None:
    page = table_in(PAGE.read_text(encoding="utf-8"))
    documented = {line.split("`")[1] for line in page.splitlines()[2:]}
    expected = {env_name(name) for name in Settings.model_fields}
    assert documented == expected, (
        f"missing: {sorted(expected - documented)}, stale: {sorted(documented - expected)}; "
        + REGENERATE
    )
    assert page == settings_table(), f"defaults or descriptions changed; {REGENERATE}"


def test_a_new_setting_changes_the_table() -> None:
    class Extended(Settings):
        new_knob: int = Field(7, description="a knob added later")

    table = settings_table(Extended)
    assert table != settings_table()
    assert "| `ORDERWATCH_NEW_KNOB` | int | `7` | a knob added later |" in table


def test_every_setting_has_a_description() -> None:
    assert [name for name, f in Settings.model_fields.items() if not f.description] == []
