"""The `crm-roi` command end to end, as a user runs it: a real process, real files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.warehouse import open_with_raw
from tests.conftest import crm_roi

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("demo")
    done = crm_roi("demo", "--db", "demo.duckdb", cwd=folder)
    return folder / "demo.duckdb", done


def test_demo_builds_every_table_and_prints_the_summary(demo_db):
    path, done = demo_db
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    for label in ("periods", "quarantined rows", "ROI", "payback", "NPV"):
        assert label in done.stdout
    with duckdb.connect(str(path), read_only=True) as con:
        roi_pct, npv = con.execute("SELECT roi_pct, npv FROM roi.summary").fetchone()
        periods = con.execute("SELECT count(*) FROM kpi.periodic").fetchone()[0]
    # The printed headline is the table's, rounded for people.
    assert f"({roi_pct:.1f} %)" in done.stdout
    assert f"{npv:,.0f} USD" in done.stdout
    assert f"{periods} months" in done.stdout
    # The last line names the report the run wrote beside the DuckDB file.
    report = Path(done.stdout.split("report           ")[1].split()[0])
    assert report == path.parent / "demo_report" / "roi_report.html" and report.is_file()


def test_the_docs_show_what_the_demo_prints(demo_db):
    path, done = demo_db
    printed = done.stdout.splitlines()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("and prints:\n\n```\n", 1)[1].split("```", 1)[0]
    for line in block.splitlines():
        if line.startswith(("tables", "report")):  # paths: the README's start with "..."
            label, suffix = line.split(".../")
            assert any(p.startswith(label) and p.endswith(suffix.replace("crm_roi_demo", "demo")) for p in printed)
        else:
            assert line in printed, line
    # The flat row of docs/roi-methods.md's table is the demo's own summary.
    with duckdb.connect(str(path), read_only=True) as con:
        incremental, low, high, roi_pct, roi_low, roi_high, npv = con.execute(
            "SELECT incremental_revenue, incremental_revenue_p05, incremental_revenue_p95, roi_pct, 100 * roi_p05, "
            "100 * roi_p95, npv FROM roi.summary").fetchone()
    methods = (REPO / "docs" / "roi-methods.md").read_text(encoding="utf-8")
    assert (f"| `flat` (the demo's setting) | {incremental:,.0f} | {low:,.0f} .. {high:,.0f} | {roi_pct:.0f} % | "
            f"{roi_low:.0f} .. {roi_high:.0f} % | {npv:,.0f} |") in methods


def test_query_prints_a_table_and_csv(demo_db):
    path, _ = demo_db
    sql = "SELECT count(*) AS n FROM kpi.periodic"
    table = crm_roi("query", "--db", str(path), sql, cwd=path.parent)
    assert table.returncode == 0, table.stderr
    with duckdb.connect(str(path), read_only=True) as con:
        expected = con.execute(sql).fetchone()[0]
    assert table.stdout.split()[-1] == str(expected)
    as_csv = crm_roi("query", "--db", str(path), "--format", "csv", sql, cwd=path.parent)
    assert as_csv.stdout.splitlines() == ["n", str(expected)]


def test_query_on_the_working_file_reads_its_raw_layer_too(demo_db):
    path, _ = demo_db
    sql = "SELECT count(*) AS n FROM raw.deals"
    done = crm_roi("query", "--db", str(path), "--format", "csv", sql, cwd=path.parent)
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(path.with_suffix(".raw.duckdb")), read_only=True) as con:
        landed = con.execute("SELECT count(*) FROM deals").fetchone()[0]
    assert done.stdout.splitlines() == ["n", str(landed)]
    assert landed > 5000


def test_run_with_config_on_a_folder_of_canonical_exports(tmp_path: Path):
    shutil.copytree(REPO / "data" / "sample", tmp_path / "exports")
    config = yaml.safe_load((tmp_path / "exports" / "crm_roi.yaml").read_text())
    config["sources"] = [{"kind": "files", "path": "exports"}]
    config["finance"]["path"] = "exports/finance_gl.csv"
    config["duckdb_path"] = "out/warehouse.duckdb"
    (tmp_path / "team.yaml").write_text(yaml.safe_dump(config))
    first = crm_roi("run", "--config", "team.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # A second run loads nothing new and changes nothing.
    with open_with_raw(tmp_path / "out" / "warehouse.duckdb", read_only=True) as con:
        before = con.execute("SELECT count(*), max(_batch_id) FROM raw.deals").fetchone()
    second = crm_roi("run", "--config", "team.yaml", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    # It says what it read: every file loaded the first time, unchanged the second; the rest is the same.
    assert "files            files_1: 6 loaded, 0 unchanged" in first.stdout.splitlines()
    assert "files            files_1: 0 loaded, 6 unchanged" in second.stdout.splitlines()
    assert [line for line in second.stdout.splitlines() if not line.startswith("files ")] == [
        line for line in first.stdout.splitlines() if not line.startswith("files ")]
    with open_with_raw(tmp_path / "out" / "warehouse.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*), max(_batch_id) FROM raw.deals").fetchone() == before


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["run", "--config", "missing.yaml"], None, "config file 'missing.yaml' not found"),
        (["run", "--config", "bad.yaml"], {"go_live": "2025-13-01"}, "go_live"),
        (["run", "--config", "bad.yaml"], {"go_live": "2025-01-01", "colour": "red"}, "colour: unknown key"),
        (["query", "--db", "nowhere.duckdb", "SELECT 1"], None, "no DuckDB file at nowhere.duckdb"),
    ],
)
def test_user_mistakes_are_one_line_and_a_nonzero_exit(tmp_path: Path, args, config, message):
    if config is not None:
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    done = crm_roi(*args, cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert message in done.stderr


def test_bad_sql_is_one_line(demo_db):
    path, _ = demo_db
    done = crm_roi("query", "--db", str(path), "SELECT nope FROM kpi.periodic", cwd=path.parent)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    assert "nope" in done.stderr


def test_a_broken_export_fails_the_run_with_the_file_and_column_named(tmp_path: Path):
    shutil.copytree(REPO / "data" / "sample", tmp_path / "exports")
    deals = tmp_path / "exports" / "deals.csv"
    deals.write_text(deals.read_text().replace("created_at", "create_date", 1))
    done = crm_roi("run", "--config", "exports/crm_roi.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "deals.csv" in done.stderr and "created_at" in done.stderr


@pytest.mark.parametrize("command", [[], ["run"], ["demo"], ["query"]])
def test_help_explains_each_command(command: list[str], tmp_path: Path):
    done = crm_roi(*command, "--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "Usage: crm-roi" in done.stdout
    assert len(done.stdout.splitlines()) > 4


def test_a_file_changed_in_place_needs_full_reload(tmp_path: Path):
    shutil.copytree(REPO / "data" / "sample", tmp_path / "exports")
    config = "exports/crm_roi.yaml"
    assert crm_roi("run", "--config", config, cwd=tmp_path).returncode == 0
    deals = tmp_path / "exports" / "deals.csv"
    lines = deals.read_text().splitlines(keepends=True)
    first = lines[1].split(",")
    deal_id = first[0]  # D-000001, which appears once in the demo export
    first[8] = "123456.00"  # the amount column
    deals.write_text("".join([lines[0], ",".join(first), *lines[2:]]))

    refused = crm_roi("run", "--config", config, cwd=tmp_path)
    assert refused.returncode == 1
    assert "deals.csv: changed since it was loaded" in refused.stderr and "--full-reload" in refused.stderr

    reloaded = crm_roi("run", "--config", config, "--full-reload", cwd=tmp_path)
    assert reloaded.returncode == 0, reloaded.stderr
    with open_with_raw(tmp_path / "exports" / "crm_roi.duckdb", read_only=True) as con:
        # Reloaded, not appended: raw holds the file's rows once.
        assert con.execute("SELECT count(*) FROM raw.deals").fetchone()[0] == len(lines) - 1
        amounts = con.execute("SELECT amount FROM staging.deals WHERE deal_id = ?", [deal_id]).fetchall()
    assert amounts == [(123456.0,)]


def test_live_demo_syncs_from_a_fake_hubspot_to_the_same_numbers(demo_db, tmp_path: Path):
    done = crm_roi("demo", "--live", "--db", "live.duckdb", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "fake HubSpot on http://127.0.0.1:" in done.stdout
    full = int(done.stdout.split("full sync: ")[1].split()[0].replace(",", ""))
    incremental = int(done.stdout.split("changed: ")[1].split()[0].replace(",", ""))
    assert 0 < incremental < full / 5
    # The same records over HTTP give the same ROI as the files demo.
    files_path, _ = demo_db
    query = "SELECT cumulative_benefit, cumulative_cost, npv FROM roi.summary"
    with duckdb.connect(str(files_path), read_only=True) as con:
        from_files = con.execute(query).fetchone()
    with duckdb.connect(str(tmp_path / "live.published.duckdb"), read_only=True) as con:
        from_api = con.execute(query).fetchone()
    assert from_api == pytest.approx(from_files, rel=1e-9)


def test_query_without_flags_reads_the_demo_copy_after_the_demo(tmp_path: Path):
    assert crm_roi("demo", cwd=tmp_path).returncode == 0
    done = crm_roi("query", "--format", "csv", "SELECT count(*) AS n FROM roi.summary", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["n", "1"]


@pytest.mark.parametrize("statement", [
    "COPY (SELECT * FROM roi.summary) TO 'leak.csv'",
    "EXPORT DATABASE 'leak'",
    "ATTACH 'leak.duckdb' AS other",
    "INSTALL httpfs",
    "CREATE TABLE leak AS SELECT 1",
])
def test_query_refuses_statements_that_write(demo_db, statement: str):
    path, _ = demo_db
    before = sorted(p.name for p in path.parent.iterdir())
    done = crm_roi("query", "--db", str(path), statement, cwd=path.parent)
    assert done.returncode == 1
    assert done.stderr.startswith("error: crm-roi query only reads") and len(done.stderr.splitlines()) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == before


def test_query_cannot_read_files_outside_the_tables(demo_db):
    path, _ = demo_db
    done = crm_roi("query", "--db", str(path), "SELECT * FROM read_csv('/etc/hostname')", cwd=path.parent)
    assert done.returncode == 1
    assert "file system operations are disabled" in done.stderr and len(done.stderr.splitlines()) == 1


def test_an_export_named_outside_the_patterns_is_a_warning(tmp_path: Path):
    shutil.copytree(REPO / "data" / "sample", tmp_path / "exports")
    (tmp_path / "exports" / "Deals export Nov.csv").write_text("deal_id,created_at\nN1,2026-11-02\n")
    done = crm_roi("run", "--config", "exports/crm_roi.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("warning: files_1: no stream reads Deals export Nov.csv (name a file under the source's files: "
            "to load it)") in done.stderr.splitlines()
    # finance_gl.csv sits in the same folder, read by finance: not a stray export.
    assert "finance_gl.csv" not in done.stderr
