"""Run the `sql/` models: staging (with quarantine), KPI and ROI tables.

Each table is replaced in one transaction, so a reader or a failed run sees the
previous complete table or the new complete table, never a mix.
"""

from __future__ import annotations

import hashlib
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


# Staging tables read by another staging model (deals and GL lines are priced with fx_rates).
STAGING_UPSTREAM = {"deals": ("fx_rates",), "finance_gl": ("fx_rates",)}
# The run variables each staging model reads.
STAGING_VARIABLES = {"deals": ("base_currency",), "finance_gl": ("base_currency", "accounts")}


@dataclass(frozen=True)
class StagingResult:
    rows: int
    rejected: int
    rebuilt: bool = True


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def model_fingerprint(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """A digest of how staging.<table> is computed: its model, the macros, run settings and upstream tables."""
    variables = [
        con.execute("SELECT getvariable($name)", {"name": name}).fetchone()[0]
        for name in STAGING_VARIABLES.get(table, ())
    ]
    upstream = [inputs_fingerprint(con, dep) for dep in STAGING_UPSTREAM.get(table, ())]
    return _digest(sql_text("macros"), sql_text(f"staging/{table}"), *variables, *upstream)


def inputs_fingerprint(con: duckdb.DuckDBPyConnection, table: str, model: str | None = None) -> str:
    """The model's fingerprint plus the raw table's state.

    The raw table's size and last batch stand in for its content: raw rows are
    only appended with a new batch id, and never removed (an API upsert, a full
    reload) without the count of older rows dropping.
    """
    rows, last_batch = con.execute(
        f"SELECT count(*), max(_batch_id) FROM raw.{table}"  # noqa: S608 (whitelisted table)
    ).fetchone()
    return _digest(model or model_fingerprint(con, table), rows, last_batch)


def _build_state(con: duckdb.DuckDBPyConnection, table: str) -> tuple[str, str] | None:
    return con.execute(
        "SELECT fingerprint, model_fingerprint FROM raw.build_state WHERE table_name = ?", [table]
    ).fetchone()


def build_staging(con: duckdb.DuckDBPyConnection, table: str) -> StagingResult:
    """Rebuild staging.<table> from raw and replace its quarantined rows, atomically.

    Skipped when nothing it is computed from changed since the last build, so a
    nightly run where one export moved rebuilds one table, not seven.
    """
    if table not in STAGING_TABLES:
        raise ValueError(f"unknown staging table {table!r}")
    model = model_fingerprint(con, table)
    fingerprint = inputs_fingerprint(con, table, model)
    previous = _build_state(con, table)
    if previous is not None and previous[0] == fingerprint:
        return StagingResult(
            rows=con.execute(f"SELECT count(*) FROM staging.{table}").fetchone()[0],  # noqa: S608
            rejected=con.execute(
                "SELECT count(*) FROM quarantine.rejected_rows WHERE table_name = ?", [table]
            ).fetchone()[0],
            rebuilt=False,
        )
    with transaction(con):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _typed AS {sql_text(f'staging/{table}')}")
        con.execute(
            f"CREATE OR REPLACE TABLE staging.{table} AS "  # noqa: S608 (whitelisted table)
            "SELECT * EXCLUDE (_key, _reasons, _raw_rowid, _file, _row_number) "
            "FROM _typed WHERE len(_reasons) = 0"
        )
        con.execute("DELETE FROM quarantine.rejected_rows WHERE table_name = ?", [table])
        # The raw row is kept as JSON for rejected rows only: serialising every row cost
        # more than all the parsing put together.
        con.execute(
            "INSERT INTO quarantine.rejected_rows "  # noqa: S608 (whitelisted table)
            "SELECT $table, t.source, t._key, array_to_string(t._reasons, '; '), to_json(r), t._file, "
            f"t._row_number, t.batch_id, now()::TIMESTAMP FROM _typed AS t JOIN raw.{table} AS r "
            "ON r.rowid = t._raw_rowid WHERE len(t._reasons) > 0",
            {"table": table},
        )
        rows = con.execute(f"SELECT count(*) FROM staging.{table}").fetchone()[0]  # noqa: S608
        rejected = con.execute("SELECT count(*) FROM _typed WHERE len(_reasons) > 0").fetchone()[0]
        con.execute("DROP TABLE _typed")
        # Rows from batches already validated are the same rows as before, unless the model,
        # its settings or an upstream table changed: then every row is checked again.
        con.execute(
            "INSERT OR REPLACE INTO raw.build_state VALUES ($table, $fingerprint, $model, now()::TIMESTAMP, "
            "(SELECT validated_batch FROM raw.build_state WHERE table_name = $table AND model_fingerprint = $model))",
            {"table": table, "fingerprint": fingerprint, "model": model},
        )
    return StagingResult(rows=rows, rejected=rejected)


def build_mart(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Rebuild one KPI or ROI table from its model; returns its row count."""
    if table not in MART_TABLES:
        raise ValueError(f"unknown table {table!r}")
    with transaction(con):
        con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql_text(table.replace('.', '/'))}")
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 (whitelisted)
