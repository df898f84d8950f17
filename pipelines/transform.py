"""Run the `sql/` models: staging (with quarantine), KPI and ROI tables.

Each table is replaced in one transaction, so a reader or a failed run sees the
previous complete table or the new complete table, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipelines.warehouse import sql_text, transaction

# Build order matters only where a model reads another: fx_rates prices deals and GL lines.
STAGING_TABLES = (
    "fx_rates", "deals", "deal_stage_history", "customers", "finance_gl", "csat", "crm_usage",
)
MART_TABLES = (
    "kpi.periodic", "kpi.baseline", "kpi.vs_baseline", "kpi.stage_durations", "roi.rolling", "roi.summary",
)


@dataclass(frozen=True)
class StagingResult:
    rows: int
    rejected: int


def build_staging(con: duckdb.DuckDBPyConnection, table: str) -> StagingResult:
    """Rebuild staging.<table> from raw and replace its quarantined rows, atomically."""
    if table not in STAGING_TABLES:
        raise ValueError(f"unknown staging table {table!r}")
    with transaction(con):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _typed AS {sql_text(f'staging/{table}')}")
        con.execute(
            f"CREATE OR REPLACE TABLE staging.{table} AS "  # noqa: S608 (whitelisted table)
            "SELECT * EXCLUDE (_key, _reasons, _payload, _file, _row_number) "
            "FROM _typed WHERE len(_reasons) = 0"
        )
        con.execute("DELETE FROM quarantine.rejected_rows WHERE table_name = ?", [table])
        con.execute(
            "INSERT INTO quarantine.rejected_rows "
            "SELECT $table, source, _key, array_to_string(_reasons, '; '), _payload, _file, "
            "_row_number, batch_id, now()::TIMESTAMP FROM _typed WHERE len(_reasons) > 0",
            {"table": table},
        )
        rows = con.execute(f"SELECT count(*) FROM staging.{table}").fetchone()[0]  # noqa: S608
        rejected = con.execute("SELECT count(*) FROM _typed WHERE len(_reasons) > 0").fetchone()[0]
        con.execute("DROP TABLE _typed")
    return StagingResult(rows=rows, rejected=rejected)


def build_mart(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Rebuild one KPI or ROI table from its model; returns its row count."""
    if table not in MART_TABLES:
        raise ValueError(f"unknown table {table!r}")
    with transaction(con):
        con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql_text(table.replace('.', '/'))}")
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 (whitelisted)
