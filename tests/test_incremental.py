"""A nightly run does only the work its new data needs, and ends where a full rebuild would.

Real Dagster runs of the nightly job on a copy of the demo exports: a staging table
whose inputs did not change is not rebuilt, only rows from new batches are checked
again, and the analyst copy carries unchanged tables forward. Each test compares the
incremental result with a from-scratch build of the same files, table by table.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import yaml

from pipelines import transform
from pipelines.config import load_settings
from pipelines.definitions import build_defs
from tests.conftest import ACCOUNTS, DEAL_COLUMNS, GL_COLUMNS, deal, run_pipeline, write_csv
from tests.test_crash_safety import differences, fingerprint

REPO = Path(__file__).resolve().parent.parent


def _exports(folder: Path) -> Path:
    shutil.copytree(REPO / "data" / "sample", folder)
    return folder / "crm_roi.yaml"


def _nightly(config: Path) -> dict[tuple[str, str], dict]:
    """Run the nightly job; return each Pandera check's metadata by (table, check)."""
    result = build_defs(load_settings(config)).resolve_job_def("nightly").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    return {
        (check.asset_key.path[-1], check.check_name): {k: v.value for k, v in check.metadata.items()}
        for check in result.get_asset_check_evaluations() if check.check_name.startswith("pandera_")
    }


def _built_at(config: Path) -> dict[str, object]:
    with duckdb.connect(str(config.parent / "crm_roi.duckdb"), read_only=True) as con:
        return dict(con.execute("SELECT table_name, built_at FROM bookkeeping.build_state").fetchall())


def _published(config: Path) -> dict:
    return fingerprint(config.parent / "crm_roi.published.duckdb")


def _write_delta(folder: Path, changes: int) -> list[str]:
    """A nightly export that re-sends `changes` open deals as won a day after their last update."""
    with (folder / "deals.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames
        rows = list(reader)
    once = Counter(row["deal_id"] for row in rows)
    open_deals = [row for row in rows if row["is_closed"] == "false" and row["is_deleted"] != "true"
                  and once[row["deal_id"]] == 1 and "2025" < row["updated_at"] < "2026-10-01"]
    changed = []
    for row in open_deals[:changes]:
        when = (dt.datetime.fromisoformat(row["updated_at"]) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed.append({**row, "stage": "closedwon", "is_closed": "true", "is_won": "true",
                        "closed_at": when, "updated_at": when})
    with (folder / "deals_delta_001.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(changed)
    return [row["deal_id"] for row in changed]


def test_a_rerun_without_new_files_rebuilds_nothing_and_rechecks_only_what_failed(tmp_path: Path):
    config = _exports(tmp_path / "exports")
    first_checks = _nightly(config)
    first_built, first_tables = _built_at(config), _published(config)

    second_checks = _nightly(config)

    assert _built_at(config) == first_built  # no staging table rebuilt
    assert differences(_published(config), first_tables) == []
    for (table, check), metadata in second_checks.items():
        failed_before = first_checks[(table, check)]["failing_rows"] > 0 or any(
            first_checks[(table, other)]["failing_rows"] > 0 for t, other in first_checks if t == table)
        if failed_before:
            # The demo has deals without an amount (a warning): those rows keep being checked and reported.
            assert metadata["rows_checked"] == first_checks[(table, check)]["rows_checked"], (table, check)
            assert metadata["failing_rows"] == first_checks[(table, check)]["failing_rows"]
        else:
            assert metadata["rows_checked"] == 0, (table, check)
    assert second_checks[("deals", "pandera_amount_present")]["failing_rows"] > 0


def test_a_delta_file_rebuilds_only_its_table_and_ends_where_a_full_rebuild_does(tmp_path: Path):
    config = _exports(tmp_path / "incremental")
    _nightly(config)
    before = _built_at(config)
    changed = _write_delta(config.parent, 25)
    assert len(changed) == 25

    checks = _nightly(config)

    after = _built_at(config)
    # Customers are rebuilt too: a won deal can make its account a customer.
    assert {t for t in after if after[t] != before[t]} == {"deals", "customers"}
    # Only the tables whose rows moved are checked again: no GL line or history row.
    assert checks[("deal_stage_history", "pandera_schema")]["rows_checked"] == 0
    assert checks[("finance_gl", "pandera_schema")]["rows_checked"] == 0
    # The same files built from scratch give the same analyst copy, table by table.
    scratch = _exports(tmp_path / "scratch")
    shutil.copy(config.parent / "deals_delta_001.csv", scratch.parent)
    _nightly(scratch)
    assert differences(_published(config), _published(scratch)) == []
    with duckdb.connect(str(config.parent / "crm_roi.published.duckdb"), read_only=True) as con:
        won = con.execute("SELECT count(*) FROM staging.deals WHERE is_won AND deal_id IN (SELECT unnest(?))",
                          [changed]).fetchone()[0]
    assert won == 25


def test_a_changed_setting_rebuilds_and_rechecks_every_row_it_touches(tmp_path: Path):
    config = _exports(tmp_path / "exports")
    _nightly(config)
    before = _built_at(config)
    settings = yaml.safe_load(config.read_text())
    settings["finance"]["accounts"]["6300"] = "sales_marketing"  # operating cost re-mapped
    config.write_text(yaml.safe_dump(settings))

    checks = _nightly(config)

    after = _built_at(config)
    assert {t for t in after if after[t] != before[t]} == {"finance_gl"}
    with duckdb.connect(str(config.parent / "crm_roi.published.duckdb"), read_only=True) as con:
        lines = con.execute("SELECT count(*) FROM staging.finance_gl").fetchone()[0]
        remapped = con.execute("SELECT count(*) FROM staging.finance_gl WHERE account = '6300' "
                               "AND category <> 'sales_marketing'").fetchone()[0]
    assert checks[("finance_gl", "pandera_schema")]["rows_checked"] == lines
    assert remapped == 0


# Key-scoped rebuilds: the rows of the keys a new batch touches are rebuilt, the rest kept.
FIRST = [
    deal("D1", "2025-01-05T10:00:00Z", updated_at="2025-01-05T10:00:00Z"),
    deal("D2", "2025-01-06T10:00:00Z", "2025-02-01T10:00:00Z", won=True, updated_at="2025-02-01T10:00:00Z"),
    deal("D3", "2025-01-07T10:00:00Z", updated_at="2025-01-07T10:00:00Z"),
    deal("D4", "2025-01-08T10:00:00Z", updated_at="2025-01-08T10:00:00Z"),
    deal("D5", "2025-01-09T10:00:00Z", amount="not a number"),  # quarantined from the start
    deal("", "2025-01-10T10:00:00Z"),  # no key: judged on its own, quarantined
]
DELTA = [
    # A newer version wins; an older one loses to what is stored.
    deal("D1", "2025-01-05T10:00:00Z", "2025-03-01T10:00:00Z", won=True, updated_at="2025-03-01T10:00:00Z"),
    deal("D2", "2025-01-06T10:00:00Z", "2025-02-01T10:00:00Z", won=False, updated_at="2025-01-20T10:00:00Z"),
    # The newest version breaks a rule: the key goes to quarantine, the old version does not come back.
    deal("D3", "2025-01-07T10:00:00Z", "2025-03-02T10:00:00Z", won=True, updated_at="2025-03-03T10:00:00Z",
         currency="XYZ"),
    # A fixed version of a quarantined key, an unparseable updated_at, a new key, another keyless row.
    deal("D5", "2025-01-09T10:00:00Z", amount="500", updated_at="2025-03-04T10:00:00Z"),
    deal("D4", "2025-01-08T10:00:00Z", updated_at="yesterday"),
    deal("D6", "2025-03-05T10:00:00Z", updated_at="2025-03-05T10:00:00Z"),
    deal(" ", "2025-03-06T10:00:00Z"),
    # The same key twice in one file with equal updated_at: the later line wins.
    deal("D7", "2025-03-07T10:00:00Z", amount="100", updated_at="2025-03-07T10:00:00Z"),
    deal("D7", "2025-03-07T10:00:00Z", amount="200", updated_at="2025-03-07T10:00:00Z"),
]
COMPARED = ("staging.deals", "quarantine.rejected_rows")


def _project(folder: Path, delta: bool) -> Path:
    columns = [*DEAL_COLUMNS, "is_deleted"]
    write_csv(folder / "exports" / "deals.csv", columns, FIRST)
    if delta:
        write_csv(folder / "exports" / "deals_delta_001.csv", columns, DELTA)
    write_csv(folder / "finance_gl.csv", GL_COLUMNS, [])
    config = {"as_of": "2025-03-31", "go_live": "2025-01-01",
              "sources": [{"kind": "files", "path": "exports"}],
              "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS}}
    (folder / "crm_roi.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder / "crm_roi.yaml"


def test_a_key_scoped_rebuild_gives_the_rows_of_a_full_rebuild(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("CRM_ROI_DUCKDB", raising=False)
    config = _project(tmp_path / "incremental", delta=False)
    run_pipeline(load_settings(config)).close()
    _project(tmp_path / "incremental", delta=True)
    scoped_builds = []
    real = transform._rebuild_affected_keys
    monkeypatch.setattr(transform, "_rebuild_affected_keys",
                        lambda con, spec, after: scoped_builds.append(spec.short_name) or real(con, spec, after))
    incremental = run_pipeline(load_settings(config))
    assert scoped_builds == ["deals"]  # the delta went down the key-scoped path

    monkeypatch.undo()
    monkeypatch.delenv("CRM_ROI_DUCKDB", raising=False)
    scratch = run_pipeline(load_settings(_project(tmp_path / "scratch", delta=True)))
    incremental_db = tmp_path / "incremental" / "crm_roi.duckdb"
    scratch_db = tmp_path / "scratch" / "crm_roi.duckdb"
    incremental.close()
    scratch.close()
    assert differences(fingerprint(incremental_db, ("staging", "quarantine")),
                       fingerprint(scratch_db, ("staging", "quarantine"))) == []
    with duckdb.connect(str(incremental_db), read_only=True) as con:
        kept = dict(con.execute("SELECT deal_id, is_won FROM staging.deals").fetchall())
        amounts = dict(con.execute("SELECT deal_id, amount FROM staging.deals").fetchall())
        quarantined = sorted(con.execute(
            "SELECT key, reason FROM quarantine.rejected_rows WHERE table_name = 'deals'").fetchall(),
            key=lambda r: (r[0] or "", r[1]))
    assert kept == {"D1": True, "D2": True, "D5": False, "D6": False, "D7": False, "D4": False}
    assert amounts["D7"] == 200
    # D5's fixed version replaced its quarantined one; both keyless rows stay quarantined on their own.
    assert quarantined == [(None, "missing deal_id"), (None, "missing deal_id"),
                           ("D3", "no fx rate for XYZ on or before 2025-03-02"), ("D4", "unparseable updated_at")]
