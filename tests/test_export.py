"""`crm-roi export`: the finance workbook and the per-table files, read back with their own readers."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest
from openpyxl import load_workbook

from pipelines.models import REGISTRY
from tests.conftest import crm_roi

FORMULAS = ('=HYPERLINK("http://evil.example","click")', "+1+1", "-5+3", "@SUM(A1)")


@pytest.fixture(scope="module")
def hostile_copy(demo_published: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's analysts' copy with stage names a spreadsheet would run as formulas."""
    path = tmp_path_factory.mktemp("export") / "hostile.published.duckdb"
    shutil.copyfile(demo_published, path)
    with duckdb.connect(str(path)) as con:
        stages = [s for (s,) in con.execute("SELECT DISTINCT stage FROM kpi.stage_durations ORDER BY 1").fetchall()]
        for stage, formula in zip(stages, FORMULAS, strict=True):
            con.execute("UPDATE kpi.stage_durations SET stage = ? WHERE stage = ?", [formula, stage])
            con.execute("UPDATE staging.deal_stage_history SET stage = ? WHERE stage = ?", [formula, stage])
    return path


def test_xlsx_has_a_sheet_per_kpi_and_roi_table_with_formats(hostile_copy: Path, tmp_path: Path):
    done = crm_roi("export", str(tmp_path / "out"), "--format", "xlsx", "--db", str(hostile_copy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    book = load_workbook(tmp_path / "out" / "crm_roi.xlsx")
    assert book.sheetnames == ["assumptions", "kpi.periodic", "kpi.baseline", "kpi.vs_baseline",
                               "kpi.stage_durations", "roi.rolling", "roi.summary"]
    # Every setting that moves ROI, as numbers where they are numbers (data/sample/crm_roi.yaml).
    settings = {row[0].value: row[1].value for row in book["assumptions"].iter_rows(min_row=2)}
    assert settings["gross_margin"] == 0.6 and settings["attribution_share"] == 0.4
    assert settings["risk_adjustment"] == 0.1 and settings["discount_rate"] == 0.1
    assert settings["arpa_monthly"] == 1500 and settings["baseline_months"] == 12
    assert settings["go_live"] == dt.datetime(2025, 1, 1) and settings["finance.accounts.6100"] == "crm_software"
    meaning = {row[0].value: row[2].value for row in book["assumptions"].iter_rows(min_row=2)}
    assert meaning["gross_margin"] == "Share of incremental revenue that is benefit."

    summary = book["roi.summary"]
    header = [c.value for c in summary[1]]
    cells = dict(zip(header, summary[2], strict=True))
    with duckdb.connect(str(hostile_copy), read_only=True) as con:
        roi, npv, as_of = con.execute("SELECT roi, npv, as_of FROM roi.summary").fetchone()
    assert cells["roi"].value == pytest.approx(roi) and cells["roi"].number_format == "0.0%"
    assert cells["npv"].value == pytest.approx(npv) and cells["npv"].number_format == '#,##0.00 "USD"'
    assert cells["as_of"].value == dt.datetime.combine(as_of, dt.time())
    assert cells["as_of"].number_format == "yyyy-mm-dd"
    assert cells["payback_period_months"].number_format == "#,##0.00##"
    periodic = book["kpi.periodic"]
    columns = [c.value for c in periodic[1]]
    first = dict(zip(columns, periodic[2], strict=True))
    assert first["win_rate"].number_format == "0.0%" and first["deals_won"].number_format == "#,##0"
    assert periodic.max_row == 35  # 34 months and the header

    # Formula-like CRM text is text, shown as typed; negative numbers stay numbers.
    stages = {c.value: c for c in book["kpi.stage_durations"]["B"][1:]}
    for formula in FORMULAS:
        assert stages[formula].data_type == "s", formula
    rolling = book["roi.rolling"]
    column = [c.value for c in rolling[1]].index("net_benefit")
    net = [row[column] for row in rolling.iter_rows(min_row=2)]
    negatives = [c for c in net if isinstance(c.value, float) and c.value < 0]
    assert negatives and all(c.data_type == "n" for c in negatives)


def test_parquet_writes_every_published_table(demo_published: Path, tmp_path: Path):
    done = crm_roi("export", str(tmp_path), "--format", "parquet", "--db", str(demo_published), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expected = [t.name for t in REGISTRY.tables if t.published]
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == sorted(f"{t}.parquet" for t in expected)
    with duckdb.connect(str(demo_published), read_only=True) as con:
        for table in expected:
            stored = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            written = con.execute("SELECT count(*) FROM read_parquet(?)", [str(tmp_path / f"{table}.parquet")])
            assert written.fetchone()[0] == stored, table


def test_csv_guards_formulas_and_keeps_numbers(hostile_copy: Path, tmp_path: Path):
    done = crm_roi("export", str(tmp_path), "--format", "csv", "--db", str(hostile_copy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "kpi.stage_durations.csv").open(newline="", encoding="utf-8") as handle:
        stages = {row["stage"] for row in csv.DictReader(handle)}
    assert stages == {"'" + f for f in FORMULAS}
    with (tmp_path / "roi.rolling.csv").open(newline="", encoding="utf-8") as handle:
        net = [row["net_benefit"] for row in csv.DictReader(handle)]
    assert any(v.startswith("-") for v in net)  # a negative number is written as itself
    with duckdb.connect(str(hostile_copy), read_only=True) as con:
        deals = con.execute("SELECT count(*) FROM staging.deals").fetchone()[0]
    with (tmp_path / "staging.deals.csv").open(newline="", encoding="utf-8") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == deals


def test_export_of_a_missing_file_is_one_line(tmp_path: Path):
    done = crm_roi("export", str(tmp_path / "out"), "--db", "nowhere.duckdb", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: no DuckDB file at nowhere.duckdb: run `crm-roi run` (or `demo`) first"
