"""The KPI section of ``orderwatch report``: hours summed per indicator and dimension."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from orderwatch.cli import app


def _record(kpi: str, hour: int, dim: tuple[str, str], num: int, den: int) -> str:
    return (
        f'{{"kpi":"{kpi}","window_start":"2026-11-20T{hour:02d}:00:00Z",'
        f'"window_end":"2026-11-20T{hour + 1:02d}:00:00Z","{dim[0]}":"{dim[1]}",'
        f'"numerator":{num},"denominator":{den}}}\n'
    )


def test_report_adds_a_kpi_section_and_csv(tmp_path: Path) -> None:
    exceptions = tmp_path / "ex.jsonl"
    exceptions.write_text("")
    kpis = tmp_path / "kpis.jsonl"
    kpis.write_text(
        _record("payment_success_rate", 10, ("method", "alipay"), 9, 10)
        + _record("payment_success_rate", 11, ("method", "alipay"), 1, 10)
        + _record("on_time_shipment_rate", 10, ("warehouse_id", "WH<1>"), 3, 4)
        + "not a record\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["report", str(exceptions), "--out", str(out), "--kpis", str(kpis)]
    )
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    assert "支付成功率" in html and "50.0 % (10 / 20)" in html
    assert "WH&lt;1&gt;" in html and "75.0 %" in html
    rows = (out / "kpis.csv").read_text().splitlines()
    assert rows[0] == "kpi,dimension,numerator,denominator,rate"
    assert "payment_success_rate,alipay,10,20,0.5000" in rows
    assert "skipped 1 invalid KPI record" in result.output
