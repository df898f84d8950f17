"""Variant (a), the physical lower bound: DuckDB alone loads the exports and runs the monthly KPI SQL.

No validation framework, no Dagster, no Python over rows: a fresh DuckDB file,
each CSV read once with explicit column types, the row rules as one SQL count
per table (so it is like-for-like with a run that validates), then the monthly
KPIs. crm-roi's full run is judged against this time.

    python -m bench.bare_duckdb FOLDER --db FILE [--no-checks] [--detail FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb

from bench.canonical import BASE_CURRENCY, INTEGER, SCHEMAS, cutoff, kpi_rows
from bench.generate import ACCOUNTS
from bench.measure import write_detail
from connectors.contract import BOOL, DATE, NUMBER, TEXT, TIMESTAMP

DUCKDB_TYPES = {TEXT: "VARCHAR", BOOL: "BOOLEAN", NUMBER: "DOUBLE", INTEGER: "INTEGER", TIMESTAMP: "TIMESTAMP",
                DATE: "DATE"}

# Rules a validating run applies, one count per table; each row is counted once however many it breaks.
ROW_RULES = {
    "deals": """
        SELECT count(*) FILTER (WHERE deal_id IS NULL OR created_at IS NULL OR is_closed IS NULL OR is_won IS NULL
            OR (is_closed AND closed_at IS NULL) OR (is_won AND NOT is_closed)
            OR CAST(closed_at AS DATE) < CAST(created_at AS DATE) OR amount < 0
            OR (amount IS NOT NULL AND currency IS NULL) OR duplicates > 1)
        FROM (SELECT *, count(*) OVER (PARTITION BY deal_id) AS duplicates FROM deals)""",
    "deal_stage_history": "SELECT count(*) FILTER (WHERE deal_id IS NULL OR stage IS NULL OR entered_at IS NULL) "
                          "FROM deal_stage_history",
    "customers": "SELECT count(*) FILTER (WHERE customer_id IS NULL OR started_at IS NULL OR churned_at < started_at "
                 "OR mrr < 0) FROM customers",
    "finance_gl": "SELECT count(*) FILTER (WHERE entry_id IS NULL OR posted_on IS NULL OR account IS NULL "
                  "OR amount IS NULL OR currency IS NULL) FROM finance_gl",
}

# crm-roi's rules for kpi.periodic: live deals, closed before the cut-off, amounts in the base
# currency at the rate on or before the close date.
KPI_SQL = """
CREATE TABLE kpi_monthly AS
WITH live AS (
    SELECT d.*, d.amount * CASE WHEN d.currency = $base THEN 1.0 ELSE fx.rate_to_base END AS amount_base
    FROM deals AS d
    ASOF LEFT JOIN fx_rates AS fx
        ON d.currency = fx.currency AND CAST(coalesce(d.closed_at, d.created_at) AS DATE) >= fx.date
    WHERE NOT d.is_deleted
),
closed AS (
    SELECT
        CAST(date_trunc('month', closed_at) AS DATE) AS month,
        count(*) FILTER (WHERE is_won) AS deals_won,
        count(*) FILTER (WHERE NOT is_won) AS deals_lost,
        coalesce(sum(amount_base) FILTER (WHERE is_won), 0) AS revenue_won,
        avg(amount_base) FILTER (WHERE is_won) AS avg_deal_size,
        median(date_diff('day', CAST(created_at AS DATE), CAST(closed_at AS DATE))) FILTER (WHERE is_won)
            AS median_cycle_days
    FROM live
    WHERE is_closed AND closed_at < $cutoff
    GROUP BY ALL
),
costs AS (
    SELECT CAST(date_trunc('month', g.posted_on) AS DATE) AS month,
           sum(g.amount) FILTER (WHERE a.category = 'sales_marketing') AS sales_marketing_spend,
           sum(g.amount) FILTER (WHERE a.category LIKE 'crm\\_%' ESCAPE '\\') AS crm_cost
    FROM finance_gl AS g
    JOIN (SELECT unnest($accounts) AS account, unnest($categories) AS category) AS a USING (account)
    WHERE g.posted_on < $cutoff
    GROUP BY ALL
)
SELECT month, deals_won, deals_lost, deals_won / nullif(deals_won + deals_lost, 0) AS win_rate,
       revenue_won, avg_deal_size, median_cycle_days, sales_marketing_spend, crm_cost
FROM closed FULL JOIN costs USING (month)
ORDER BY month
"""


def read_sql(folder: Path, table: str) -> str:
    """`read_csv` of one export with every column's type given, so DuckDB neither sniffs nor guesses."""
    columns = ", ".join(f"'{name}': '{DUCKDB_TYPES[kind]}'" for name, kind in SCHEMAS[table].items())
    return f"read_csv('{folder / (table + '.csv')}', header = true, delim = ',', columns = {{{columns}}})"


def run(folder: Path, db: Path, checks: bool = True) -> dict:
    """Load, check and aggregate into a fresh `db`; return the phase times, counts and KPI series."""
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    phases: dict[str, float] = {}
    con = duckdb.connect(str(db))
    con.execute("SET enable_progress_bar = false")
    started = time.perf_counter()
    for table in SCHEMAS:
        # Table names and paths are this module's and the harness's, not user input.
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM {read_sql(folder, table)}")  # noqa: S608
    phases["load_s"] = time.perf_counter() - started
    rows = {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in SCHEMAS}  # noqa: S608
    violations = {}
    if checks:
        started = time.perf_counter()
        violations = {table: con.execute(sql).fetchone()[0] for table, sql in ROW_RULES.items()}
        phases["checks_s"] = time.perf_counter() - started
    started = time.perf_counter()
    con.execute(KPI_SQL, {"base": BASE_CURRENCY, "cutoff": cutoff(folder), "accounts": list(ACCOUNTS),
                          "categories": list(ACCOUNTS.values())})
    phases["kpi_s"] = time.perf_counter() - started
    series = con.execute("SELECT month, revenue_won, deals_won FROM kpi_monthly WHERE deals_won IS NOT NULL "
                         "ORDER BY month").fetchall()
    con.close()
    return {"phases": {k: round(v, 3) for k, v in phases.items()}, "rows": rows, "rule_violations": violations,
            "kpi": kpi_rows(*zip(*series, strict=True)) if series else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="canonical export folder (bench.generate)")
    parser.add_argument("--db", type=Path, required=True, help="DuckDB file to create (replaced if present)")
    parser.add_argument("--no-checks", action="store_true", help="skip the row rules (load and KPI only)")
    parser.add_argument("--detail", help="write phase times, row counts and the KPI series here (JSON)")
    args = parser.parse_args()
    write_detail(args.detail, run(args.folder.resolve(), args.db, checks=not args.no_checks))


if __name__ == "__main__":
    main()
