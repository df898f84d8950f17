"""Every published run's headline and complete periods are kept in the analysts' copy, and
`crm-roi diff` shows what a run restated in a period that was already complete."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import duckdb

from pipelines.models import REGISTRY
from tests.conftest import crm_roi

REPO = Path(__file__).resolve().parent.parent


def test_a_restated_month_shows_in_the_history_and_the_diff(tmp_path: Path):
    exports = tmp_path / "exports"
    shutil.copytree(REPO / "data" / "sample", exports)
    assert crm_roi("run", "--config", "exports/crm_roi.yaml", cwd=tmp_path).returncode == 0
    lonely = crm_roi("diff", "--config", "exports/crm_roi.yaml", cwd=tmp_path)
    assert lonely.returncode == 1 and "holds 1 published run(s): a diff needs two" in lonely.stderr

    # A won deal of June 2025 is re-delivered in tonight's export with twice its amount.
    with (exports / "deals.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, deals = reader.fieldnames, list(reader)
    restated = next(d for d in deals if d["is_won"] == "true" and d["closed_at"].startswith("2025-06")
                    and d["currency"] == "USD" and d["amount"])
    amount = float(restated["amount"])
    with (exports / "deals_2026-11-01.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerow({**restated, "amount": f"{2 * amount:.2f}", "updated_at": "2026-10-30T09:00:00Z"})
    assert crm_roi("run", "--config", "exports/crm_roi.yaml", cwd=tmp_path).returncode == 0

    published = exports / "crm_roi.published.duckdb"
    with duckdb.connect(str(published), read_only=True) as con:
        runs = con.execute("SELECT run_id, count(*) FROM history.kpi_periodic GROUP BY ALL ORDER BY min(run_at)"
                           ).fetchall()
        june = con.execute("SELECT revenue_won FROM history.kpi_periodic WHERE period_start = '2025-06-01' "
                           "ORDER BY run_at").fetchall()
        assert con.execute("SELECT count(*) FROM history.roi_summary").fetchone()[0] == 2
        for name in ("history.roi_summary", "history.kpi_periodic"):
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema || '.' || table_name = ? "
                "ORDER BY ordinal_position", [name]).fetchall()]
            assert columns == list(REGISTRY.table(name).columns), name
    assert [n for _, n in runs] == [34, 34]  # every period of the demo is complete in both runs
    before, after = june[0][0], june[1][0]
    assert after - before == amount  # the restatement, by hand: the same deal counted at twice its amount

    done = crm_roi("diff", "--config", "exports/crm_roi.yaml", "--format", "csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    changed = list(csv.DictReader(done.stdout.splitlines()))
    assert {(r["table"], r["period_start"], r["column"]) for r in changed} >= {
        ("kpi.periodic", "2025-06-01", "revenue_won"), ("kpi.periodic", "2025-06-01", "avg_deal_size")}
    # Elsewhere only the open pipeline moved: in the months the deal was open at their start.
    created, closed = restated["created_at"][:7], restated["closed_at"][:7]
    elsewhere = [r for r in changed if r["period_start"] != "2025-06-01"]
    assert all(r["column"] in ("open_pipeline_value_start", "pipeline_velocity")
               and created < r["period_start"][:7] <= closed for r in elsewhere), elsewhere
    revenue = next(r for r in changed if r["column"] == "revenue_won")
    assert (float(revenue["before"]), float(revenue["after"])) == (before, after)
