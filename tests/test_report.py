"""The ROI report: what it states and draws, checked against the tables by independent sums.

The browser renders it in tests/test_browser.py; here the figures and where each comes from.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.report import write_report
from pipelines.report.data import read_report_data
from tests.conftest import crm_roi, rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHARTS = {"payback", "roi", "revenue", "benefits_costs", "kpis", "sales_cycle", "sensitivity", "tei", "data_quality"}


def page_specs(page: Path) -> dict:
    """The chart specs embedded in the page, as the browser gets them."""
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r"const specs = (\{.*?\});\n", text, re.S).group(1))


def page_text(page: Path) -> str:
    """The page's visible words (tags and the inline scripts dropped)."""
    text = re.sub(r"<script>.*?</script>", "", page.read_text(encoding="utf-8"), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


@pytest.fixture(scope="module")
def report_dir(demo_published: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    done = crm_roi("report", "--db", str(demo_published), "--out", str(out), cwd=out)
    assert done.returncode == 0, done.stderr
    assert f"report   {out / 'roi_report.html'}" in done.stdout
    return out


def test_the_page_is_self_contained_with_a_png_per_chart(report_dir: Path):
    page = report_dir / "roi_report.html"
    text = page.read_text(encoding="utf-8")
    # Nothing to fetch: no external script, style, font or image, and a policy that forbids any.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<link" not in text and "@import" not in text and "url(http" not in text
    assert "default-src 'none'" in text
    assert set(page_specs(page)) == CHARTS
    for name in CHARTS:
        png = (report_dir / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC)
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width > 300 and height > 150, name


def test_headline_states_the_figures_and_every_assumption(report_dir: Path, demo_published: Path):
    with duckdb.connect(str(demo_published), read_only=True) as con:
        rolling = rows(con, "SELECT period_start, benefit_total, cost_total FROM roi.rolling ORDER BY 1")
    # Independently: running sums of the per-period benefit and cost.
    benefit = sum(r["benefit_total"] for r in rolling)
    cost = sum(r["cost_total"] for r in rolling)
    running_b = running_c = 0.0
    payback = None
    for r in rolling:
        running_b += r["benefit_total"]
        running_c += r["cost_total"]
        if payback is None and r["period_start"] >= dt.date(2025, 1, 1) and running_b >= running_c:
            payback = r["period_start"]
    text = page_text(report_dir / "roi_report.html")
    assert f"{(benefit - cost) / cost:.2f}x" in text
    assert f"{100 * (benefit - cost) / cost:,.1f} %" in text
    # The demo's README headline, worked out by hand from the same tables: payback in the 7th month.
    assert payback == dt.date(2025, 7, 1)
    assert "7 months" in text and "in Jul 2025" in text
    assert f"{benefit:,.0f} USD" in text and f"{cost:,.0f} USD" in text
    # NPV at the demo's 10 % a year, one month = 1/12 year from the first row.
    npv = sum((r["benefit_total"] - r["cost_total"]) / 1.1 ** (k / 12) for k, r in enumerate(rolling))
    assert f"NPV {npv:,.0f} USD" in text and f"{npv:,.0f}" == "509,715"
    # Every assumption of the demo config (data/sample/crm_roi.yaml), in plain words.
    for words in ("Gross margin 60 %", "Attribution 40 %", "Risk adjustment 10 %", "Discount rate 10 % a year",
                  "method flat", "worth 1,500 USD a month", "Go-live was 1 Jan 2025",
                  "12 complete months from Jan 2024 to Dec 2024", "6100 (software)"):
        assert words in text, words
    assert "What these numbers do not include" in text
    assert "8 row(s) that failed a row rule" in text  # deals 7 + finance_gl 1, as `crm-roi demo` prints


def test_benefits_and_costs_add_up_to_the_rolling_table(demo_published: Path):
    data = read_report_data(demo_published)
    with duckdb.connect(str(demo_published), read_only=True) as con:
        rolling = {r["period_start"].isoformat(): r for r in rows(con, "SELECT * FROM roi.rolling")}
    by_period: dict[str, dict[str, float]] = {}
    for part in data.benefits_costs:
        totals = by_period.setdefault(part["period_start"], {"benefit": 0.0, "cost": 0.0})
        totals[part["kind"]] += part["amount"]
    assert set(by_period) == set(rolling)
    for period, totals in by_period.items():
        assert totals["benefit"] == pytest.approx(rolling[period]["benefit_total"], abs=1e-6)
        assert -totals["cost"] == pytest.approx(rolling[period]["cost_total"], abs=1e-6)
    # The demo's ledger has five CRM categories; the first CRM cost, Oct 2024, is implementation alone.
    assert {p["part"] for p in data.benefits_costs if p["kind"] == "cost"} == {
        "CRM software", "CRM implementation", "CRM training", "CRM support", "CRM hardware"}
    first = [p for p in data.benefits_costs if p["kind"] == "cost" and p["period_start"] == "2024-10-01"]
    assert [(p["part"], p["amount"]) for p in first] == [("CRM implementation", -15000.0)]


def test_sales_cycle_and_quality_match_the_staging_rows(demo_published: Path):
    data = read_report_data(demo_published)
    with duckdb.connect(str(demo_published), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        won = rows(con, "SELECT created_at, closed_at FROM staging.deals WHERE is_won AND NOT is_deleted")
        loaded = {t: con.execute(f"SELECT count(*) FROM staging.{t}").fetchone()[0]
                  for t in ("deals", "finance_gl", "customers")}
    cycles: dict[str, list[int]] = {"before go-live": [], "after go-live": []}
    for deal in won:
        closed = deal["closed_at"].date()
        if dt.date(2024, 1, 1) <= closed < dt.date(2025, 1, 1):
            cycles["before go-live"].append((closed - deal["created_at"].date()).days)
        elif dt.date(2025, 1, 1) <= closed <= dt.date(2026, 10, 31):
            cycles["after go-live"].append((closed - deal["created_at"].date()).days)
    for phase, days in cycles.items():
        drawn = [b for b in data.cycle if b["phase"] == phase]
        assert sum(b["deals"] for b in drawn) == len(days)
        assert sum(b["share"] for b in drawn) == pytest.approx(1.0)
        under_30 = sum(b["deals"] for b in drawn if b["days_bin"] < 30)
        assert under_30 == sum(1 for d in days if d < 30)
    # The baseline's median cycle, as kpi.baseline has it (40 days), from the raw rows.
    assert statistics.median(cycles["before go-live"]) == pytest.approx(40.0)
    quality = {(r["table_name"], r["status"]): r["rows"] for r in data.data_quality}
    for table, count in loaded.items():
        assert quality[(table, "loaded")] == count
    assert quality[("finance_gl", "unparseable posted_on")] == 1
    assert sum(n for (t, s), n in quality.items() if t == "deals" and s != "loaded") == 7


def test_the_counterfactual_interval_sensitivity_and_tei_come_from_their_tables(report_dir: Path,
                                                                              demo_published: Path):
    with duckdb.connect(str(demo_published), read_only=True) as con:
        method, roi_low, roi_high, low, high = con.execute(
            "SELECT counterfactual_method, roi_p05, roi_p95, incremental_revenue_p05, incremental_revenue_p95 "
            "FROM roi.summary").fetchone()
        expected = dict(con.execute(
            "SELECT strftime(period_start, '%Y-%m-%d'), expected_revenue FROM roi.rolling "
            "WHERE period_start >= DATE '2025-01-01'").fetchall())
        quality = dict(con.execute("SELECT table_name || ':' || coalesce(reason, 'loaded'), sum(rows) "
                                   "FROM kpi.data_quality GROUP BY ALL").fetchall())
        sensitivity_rows = con.execute("SELECT count(*) FROM roi.sensitivity").fetchone()[0]
        tei_years = con.execute("SELECT count(*) FROM roi.tei").fetchone()[0]
    data = read_report_data(demo_published)
    drawn = {r["period_start"]: r["expected"] for r in data.revenue if r["expected"] is not None}
    assert drawn == pytest.approx(expected) and len(drawn) == 22
    assert {f"{r['table_name']}:{r['status']}": r["rows"] for r in data.data_quality} == quality
    assert (len(data.sensitivity), len(data.tei)) == (sensitivity_rows, tei_years)
    page = report_dir / "roi_report.html"
    assert set(page_specs(page)) == CHARTS
    text = page_text(page)
    assert f"90 % bootstrap interval {100 * roi_low:.0f} % to {100 * roi_high:.0f} %" in text
    assert f"{low:,.0f} to {high:,.0f} USD" in text
    assert f"method {method}" in text
    assert (report_dir / "tei.png").read_bytes().startswith(PNG_MAGIC)


def test_crm_text_cannot_break_out_of_the_page(demo_published: Path, tmp_path: Path):
    hostile = tmp_path / "hostile.published.duckdb"
    shutil.copyfile(demo_published, hostile)
    with duckdb.connect(str(hostile)) as con:
        con.execute("UPDATE kpi.stage_durations SET stage = '</script><script>alert(1)</script>' "
                    "WHERE stage = 'contractsent'")
    files = write_report(hostile, tmp_path / "out")
    text = files.html.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in text
    stages = {r["stage"] for r in page_specs(files.html)["sales_cycle"]["hconcat"][1]["data"]["values"]}
    assert "</script><script>alert(1)</script>" in stages  # shown as text, in the chart


def test_a_file_without_tables_is_one_line(tmp_path: Path):
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    done = crm_roi("report", "--db", str(empty), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {empty} has no roi.summary: run `crm-roi run` on it first"


def test_commands_do_not_import_the_charting_libraries():
    """A run's start-up, and every command but report and export, does not pay for them."""
    code = ("import sys, pipelines.cli, pipelines.definitions; "
            "print(sorted(m for m in ('altair', 'vl_convert', 'openpyxl') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_every_chart_is_a_valid_vega_lite_spec(demo_published: Path):
    """Specs are not validated while a run builds them (it cost most of that time): here instead."""
    import jsonschema
    from altair.vegalite.v6.schema import load_schema

    from pipelines.report.charts import build_charts

    schema = load_schema()
    charts = build_charts(read_report_data(demo_published), "USD")
    assert {c.name for c in charts} == CHARTS
    for chart in charts:
        jsonschema.validate(chart.spec, schema)
    broken = {**charts[0].spec, "mark": {"type": "nonsense"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
