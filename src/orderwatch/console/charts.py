"""Server-rendered SVG charts for the overview: geometry computed here, drawn by the template.

No chart library: four bar charts do not justify shipping one, the SVG works without JavaScript
and under a strict Content-Security-Policy, and the template escapes every label like any text.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("critical", "high", "medium", "low")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    cls: str
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "start"


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    labels: tuple[Label, ...]


def stacked_rows(
    rows: dict[str, dict[str, int]], names: dict[str, str], sev_names: dict[str, str]
) -> Chart:
    """Horizontal stacked bars: one row per team, one segment per severity."""
    width, left, row_h = 560, 130, 26
    biggest = max((sum(r.values()) for r in rows.values()), default=0) or 1
    bars: list[Bar] = []
    labels: list[Label] = []
    for i, (owner, counts) in enumerate(sorted(rows.items(), key=lambda kv: -sum(kv[1].values()))):
        y = 8 + i * row_h
        labels.append(Label(left - 8, y + 15, names.get(owner, owner), "end"))
        x = float(left)
        for sev in SEVERITIES:
            n = counts.get(sev, 0)
            if not n:
                continue
            w = (width - left - 60) * n / biggest
            bars.append(Bar(x, y, w, row_h - 8, f"sev-{sev}", f"{sev_names[sev]}: {n}"))
            x += w
        labels.append(Label(x + 6, y + 15, str(sum(counts.values()))))
    return Chart(width, 16 + len(rows) * row_h, tuple(bars), tuple(labels))


def columns(values: list[int], caption_first: str, caption_last: str) -> Chart:
    """Vertical bars (exceptions per hour, oldest hour first)."""
    width, height, bottom = 560, 170, 20
    biggest = max(values, default=0) or 1
    step = (width - 20) / max(len(values), 1)
    bars = tuple(
        Bar(
            10 + i * step,
            height - bottom - (height - bottom - 16) * n / biggest,
            step - 3,
            (height - bottom - 16) * n / biggest,
            "col",
            str(n),
        )
        for i, n in enumerate(values)
    )
    labels = (
        Label(10, height - 4, caption_first),
        Label(width - 10, height - 4, caption_last, "end"),
        Label(width - 10, 12, f"max {max(values, default=0)}", "end"),
    )
    return Chart(width, height, bars, labels)


def _fit(text: str, units: int) -> str:
    """Shorten a label to about ``units`` Latin characters (a CJK character counts two)."""
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0x2E80 else 1
        if used > units:
            return text[: max(i - 1, 1)] + "…"
    return text


def horizontal(items: list[tuple[str, float]], value_text: list[str], cls: str = "bar") -> Chart:
    """Horizontal bars with a label on the left and the value on the right."""
    width, left, row_h = 560, 230, 24
    biggest = max((v for _, v in items), default=0) or 1
    bars: list[Bar] = []
    labels: list[Label] = []
    for i, ((name, value), text) in enumerate(zip(items, value_text, strict=True)):
        y = 6 + i * row_h
        w = (width - left - 120) * value / biggest
        labels.append(Label(left - 8, y + 14, _fit(name, 30), "end"))
        bars.append(Bar(left, y, max(w, 1), row_h - 8, cls, text))
        labels.append(Label(left + max(w, 1) + 6, y + 14, text))
    return Chart(width, 12 + len(items) * row_h, tuple(bars), tuple(labels))
