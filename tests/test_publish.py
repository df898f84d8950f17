"""Analysts read a published copy: they never block the nightly run, never see a half-built state."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import duckdb
import yaml

from pipelines.config import load_settings
from pipelines.definitions import build_defs

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
