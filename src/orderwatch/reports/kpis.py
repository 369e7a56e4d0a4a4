"""The KPI section of ``orderwatch report`` (CONTRACT section 11): the hourly KPI records summed
over the period, per indicator and dimension value, as a table, a bar chart and ``kpis.csv``.

Records come from ``orderwatch replay --kpis`` or a dump of the ``order-kpis`` topic; a ratio is
computed only here, from the summed numerators and denominators (never averaged over hours).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from html import escape
from pathlib import Path

from pydantic import ValidationError

from orderwatch.events.kpis import DIMENSION, KpiRecord

TITLES = {
    "payment_success_rate": "Payment success rate (支付成功率)",
    "on_time_shipment_rate": "On-time shipment rate (发货及时率)",
    "on_time_delivery_rate": "On-time delivery rate",
}


def read_kpis(path: Path) -> tuple[list[KpiRecord], int]:
    """The valid records of a JSONL file, and how many lines were skipped as invalid."""
    records: list[KpiRecord] = []
    skipped = 0
    with path.open("rb") as stream:
        for line in stream:
            if not line.strip():
                continue
            try:
                records.append(KpiRecord.model_validate_json(line))
            except ValidationError:
                skipped += 1
    return records, skipped


def summarize(records: Iterable[KpiRecord]) -> list[tuple[str, str, int, int]]:
    """``(kpi, dimension value, numerator, denominator)`` summed over every hour read."""
    sums: dict[tuple[str, str], list[int]] = {}
    for r in records:
        dim = getattr(r, DIMENSION[r.kpi]) or "unknown"
        s = sums.setdefault((r.kpi, dim), [0, 0])
        s[0] += r.numerator
        s[1] += r.denominator
    return [(k, d, n, m) for (k, d), (n, m) in sorted(sums.items())]


def section_html(rows: list[tuple[str, str, int, int]]) -> str:
    out = ['<h2 id="kpis">Key indicators</h2>']
    if not rows:
        return out[0] + '<p class="note">No KPI records.</p>'
    out.append('<p class="note">Summed over the hours read. Full table: kpis.csv</p>')
    for kpi, title in TITLES.items():
        mine = [r for r in rows if r[0] == kpi]
        if not mine:
            continue
        num = sum(r[2] for r in mine)
        den = sum(r[3] for r in mine)
        out.append(f"<h3>{escape(title)}: {100 * num / den:.1f} % ({num} / {den})</h3>")
        out.append("<table><tr><th>" + escape(DIMENSION[kpi]) + "</th>")
        out.append("<th>numerator</th><th>denominator</th><th>rate</th></tr>")
        for _, dim, n, m in mine:
            out.append(
                f"<tr><td>{escape(dim)}</td><td class=num>{n}</td><td class=num>{m}</td>"
                f"<td class=num>{100 * n / m:.1f} %</td></tr>"
            )
        out.append("</table>")
    return "".join(out)


def write_kpis(rows: list[tuple[str, str, int, int]], out: Path) -> Path:
    path = out / "kpis.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["kpi", "dimension", "numerator", "denominator", "rate"])
        for kpi, dim, n, m in rows:
            w.writerow([kpi, dim, n, m, f"{n / m:.4f}"])
    return path


def add_to_report(page: Path, kpis_path: Path) -> tuple[Path, int]:
    """Append the KPI section to a written ``report.html``; the CSV beside it."""
    records, skipped = read_kpis(kpis_path)
    rows = summarize(records)
    html = page.read_text(encoding="utf-8")
    html = html.replace("</body></html>", section_html(rows) + "</body></html>", 1)
    page.write_text(html, encoding="utf-8")
    return write_kpis(rows, page.parent), skipped
