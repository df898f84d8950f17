"""Analysts read a published copy: they never block the nightly run, never see a half-built state."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from pipelines.config import load_settings
from pipelines.definitions import build_defs
from pipelines.models import REGISTRY
from tests.conftest import crm_roi, run_ok, uv

REPO = Path(__file__).resolve().parent.parent
ANALYST = textwrap.dedent(
    """
    import sys, time, duckdb
    published, go = sys.argv[1], sys.argv[2]
    con = duckdb.connect(published, read_only=True)
    def state():
        return con.execute(
            "SELECT (SELECT count(*) FROM staging.deals), (SELECT cumulative_benefit FROM roi.summary)"
        ).fetchone()
    print("before", *state(), flush=True)
    import os
    while not os.path.exists(go):
        time.sleep(0.05)
    print("after", *state(), flush=True)
    """
)


def _nightly(config: Path) -> None:
    result = build_defs(load_settings(config)).resolve_job_def("nightly").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success


def test_an_open_analyst_connection_neither_blocks_the_run_nor_sees_a_mix(tmp_path: Path, monkeypatch):
    shutil.copytree(REPO / "data" / "sample", tmp_path / "exports")
    config = tmp_path / "exports" / "crm_roi.yaml"
    settings = yaml.safe_load(config.read_text())
    settings["as_of"] = "2026-11-30"
    config.write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("CRM_ROI_LOCK_WAIT_SECONDS", "0")  # any lock conflict fails at once
    _nightly(config)
    published = tmp_path / "exports" / "crm_roi.published.duckdb"
    assert oct(published.stat().st_mode)[-3:] == "600"

    go = tmp_path / "go"
    analyst = subprocess.Popen([sys.executable, "-c", ANALYST, str(published), str(go)],
                               stdout=subprocess.PIPE, text=True)
    before = analyst.stdout.readline().split()
    assert before[0] == "before"

    # A nightly delta arrives: one more won deal. The run must succeed while the analyst reads.
    (tmp_path / "exports" / "deals_2026-11-25.csv").write_text(
        "deal_id,deal_name,account_id,owner_id,pipeline,stage,is_closed,is_won,amount,currency,"
        "created_at,closed_at,updated_at\n"
        "D-NEW-1,Big one,C-00001,U-001,new_business,closedwon,true,true,250000.00,USD,"
        "2026-11-02T10:00:00Z,2026-11-20T10:00:00Z,2026-11-20T10:00:00Z\n"
    )
    _nightly(config)
    go.touch()
    after = analyst.stdout.readline().split()
    assert analyst.wait(timeout=30) == 0

    # The open connection kept its consistent snapshot; a new connection sees the new run whole.
    assert after[1:] == before[1:]
    with duckdb.connect(str(published), read_only=True) as con:
        deals, benefit = con.execute(
            "SELECT (SELECT count(*) FROM staging.deals), (SELECT cumulative_benefit FROM roi.summary)"
        ).fetchone()
    assert deals == int(before[1]) + 1
    assert benefit != float(before[2])


def test_the_analysts_copy_carries_the_registry_as_comments(tmp_path: Path):
    assert crm_roi("demo", "--db", "demo.duckdb", cwd=tmp_path).returncode == 0
    with duckdb.connect(str(tmp_path / "demo.published.duckdb"), read_only=True) as con:
        tables = dict(con.execute("SELECT schema_name || '.' || table_name, comment FROM duckdb_tables()").fetchall())
        columns = dict(con.execute("SELECT schema_name || '.' || table_name || '.' || column_name, comment "
                                   "FROM duckdb_columns() WHERE schema_name = 'roi'").fetchall())
    assert tables["roi.summary"] == REGISTRY.table("roi.summary").description
    assert tables["kpi.periodic"] == REGISTRY.table("kpi.periodic").description
    assert columns["roi.summary.payback_period_months"] == (
        "Months from go-live to the first period with payback; null if none.")
    assert all(columns.values())


@pytest.mark.slow
def test_the_analysts_copy_opens_in_duckdb_1_4(tmp_path: Path):
    """SQL clients that bundle DuckDB 1.4 (the last 1.x line) open the copy: checked with that wheel."""
    assert crm_roi("demo", "--db", "demo.duckdb", cwd=tmp_path).returncode == 0
    venv = tmp_path / "duckdb14"
    run_ok(uv(), "venv", "--quiet", "--python", sys.executable, str(venv), cwd=tmp_path)
    run_ok(uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "duckdb==1.4.*", cwd=tmp_path)
    query = "SELECT roi, npv, payback_period_months FROM roi.summary"
    old = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import duckdb, sys; print(duckdb.__version__); "
                          f"print(duckdb.connect(sys.argv[1], read_only=True).execute({query!r}).fetchone())",
                          str(tmp_path / "demo.published.duckdb")], capture_output=True, text=True, timeout=120)
    assert old.returncode == 0, old.stderr[-2000:]
    version, values = old.stdout.splitlines()
    assert version.startswith("1.4.")
    with duckdb.connect(str(tmp_path / "demo.published.duckdb"), read_only=True) as con:
        assert values == str(con.execute(query).fetchone())
