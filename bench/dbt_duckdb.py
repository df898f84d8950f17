"""Variant (e), the peer data teams actually use: a dbt-duckdb project doing the same work.

`bench/dbt_project` loads the same exports with explicit types, keeps the latest version of
each deal (the usual dbt `row_number()` dedup), runs the row rules as dbt tests (warnings, so
the KPIs are still built, as crm-roi quarantines and goes on) and builds the monthly KPIs of
the bare-DuckDB variant. `dbt build` runs in this process through dbt's own runner.

    python -m bench.dbt_duckdb FOLDER --db FILE [--detail FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

from bench.canonical import BASE_CURRENCY, cutoff, kpi_rows
from bench.generate import ACCOUNTS
from bench.measure import write_detail

PROJECT = Path(__file__).resolve().parent / "dbt_project"


def run(folder: Path, db: Path) -> dict:
    """`dbt build` into a fresh `db`; return its time, the tests' failures and the KPI series."""
    from dbt.cli.main import dbtRunner

    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        profiles = Path(scratch)
        (profiles / "profiles.yml").write_text(yaml.safe_dump({"crm_roi_bench": {
            "target": "bench", "outputs": {"bench": {"type": "duckdb", "path": str(db), "threads": 2}},
        }}), encoding="utf-8")
        variables = {"folder": str(folder), "cutoff": cutoff(folder).isoformat(sep=" "),
                     "base_currency": BASE_CURRENCY, "accounts": ACCOUNTS}
        started = time.perf_counter()
        result = dbtRunner().invoke([
            "build", "--project-dir", str(PROJECT), "--profiles-dir", str(profiles), "--vars", json.dumps(variables),
            "--target-path", str(profiles / "target"), "--log-path", str(profiles / "logs"), "--quiet",
        ])
        build_s = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"dbt build failed: {result.exception}")
    failures = {node.node.name: node.failures for node in result.result if node.failures}
    # dbt-duckdb keeps its own connection to `db` open in this process: open it the way it did.
    with duckdb.connect(str(db)) as con:
        series = con.execute("SELECT month, revenue_won, deals_won FROM kpi_monthly WHERE deals_won IS NOT NULL "
                             "ORDER BY month").fetchall()
    return {"phases": {"build_s": round(build_s, 3)}, "rule_violations": failures,
            "kpi": kpi_rows(*zip(*series, strict=True)) if series else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="canonical export folder (bench.generate)")
    parser.add_argument("--db", type=Path, required=True, help="DuckDB file to create (replaced if present)")
    parser.add_argument("--detail", help="write the build time, test failures and the KPI series here (JSON)")
    args = parser.parse_args()
    write_detail(args.detail, run(args.folder.resolve(), args.db.resolve()))


if __name__ == "__main__":
    main()
