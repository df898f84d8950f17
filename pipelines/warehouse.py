"""The DuckDB files: opening them, the run's parameters, and running `sql/` files.

The working state is two files side by side: the working file (staging, quarantine,
KPI and ROI tables, build bookkeeping) and its raw companion, `<name>.raw.duckdb`,
attached as the catalog `raw`, so `raw.deals` means the same in every model. The raw
layer is the largest part of the state and analysts never read it; in its own file it
stays out of the analyst copy, which is a byte copy of the working file (see publish.py).
DuckDB writes one attached file per transaction: landing (raw rows, raw.loaded_files,
raw.sync_state) writes only the raw file, a staging build (staging, quarantine,
bookkeeping.build_state) only the working file.

DuckDB admits one writing process at a time. Dagster serialises writers with a
concurrency pool (see dagster.yaml); opening also waits out a lock held by
another process for a bounded time instead of failing at once, so a manual run
that overlaps the nightly one queues behind it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

from connectors.contract import CANONICAL_STREAMS, SQL_TYPES, TEXT_COLUMN
from connectors.files.synonyms import CLOSED_STAGE_WORDS
from pipelines.config import Settings
from pipelines.sql_files import sql_text

LOCK_WAIT_SECONDS = float(os.environ.get("CRM_ROI_LOCK_WAIT_SECONDS", "300"))
# Every raw row also records where it came from. `_row_number` is an API row's place in its page;
# a file row's line is its place among its batch's row ids (pipelines/raw_files.py), not stored.
RAW_META_COLUMNS = {
    "_source": "VARCHAR NOT NULL", "_file": "VARCHAR", "_row_number": "BIGINT",
    "_batch_id": "BIGINT NOT NULL", "_loaded_at": "TIMESTAMP NOT NULL",
}
RAW_CATALOG = "raw"
WORKING_SCHEMAS = ("staging", "quarantine", "kpi", "roi", "bookkeeping")
# The working file (so the analysts' copy) is written in a storage format DuckDB 1.4, the last
# 1.x line and the one many SQL clients still bundle, can open; older formats made runs slower
# (bench/PROFILING.md).
OLDEST_READER = "v1.4.0"


class WarehouseLocked(RuntimeError):
    """Another process held the DuckDB file for longer than the lock wait: a user-facing, one-line error."""


class RawFileOutdated(RuntimeError):
    """The raw file was made by a build whose raw layer held text, not typed values: a user-facing, one-line error."""


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _locked_error(path: Path, exc: duckdb.IOException) -> WarehouseLocked:
    holder = re.search(r"\(PID (\d+)\)", str(exc))
    by = f"another process (PID {holder.group(1)})" if holder else "another process"
    return WarehouseLocked(
        f"{path}: locked by {by} for longer than {LOCK_WAIT_SECONDS:g} s "
        "(CRM_ROI_LOCK_WAIT_SECONDS); wait for that run to finish or close the program holding "
        "the file (analysts should open the .published.duckdb copy instead)"
    )


@retry(
    retry=retry_if_exception(_is_lock_conflict),
    stop=stop_after_delay(LOCK_WAIT_SECONDS),
    wait=wait_random_exponential(multiplier=0.2, max=5),
    reraise=True,
)
def _open(path: Path, read_only: bool, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    # DuckDB's own default is 80% of RAM; a bounded buffer spills to disk instead, so a nightly
    # run on a shared box stays inside its budget.
    config = {"memory_limit": memory_limit} if memory_limit else {}
    if not read_only:  # applies to a file this creates: the analysts' copy is a byte copy of it
        config["storage_compatibility_version"] = OLDEST_READER
    return duckdb.connect(str(path), read_only=read_only, config=config)


def run_variables(settings: Settings) -> dict[str, object]:
    """The run's parameters, by the names the SQL models read them with (getvariable): DuckDB binds them
    (set_run_variables), and pipelines/portable.py writes them into the SQL it gives Spark."""
    control = settings.counterfactual.control
    return {
        "as_of": settings.effective_as_of,
        # Events count when before the cut-off: midnight UTC after as_of.
        "cutoff": dt.datetime.combine(settings.effective_as_of + dt.timedelta(days=1), dt.time()),
        "go_live": settings.go_live,
        "baseline_start": settings.baseline_start,
        "baseline_months": settings.baseline_months,
        "period": settings.period,
        "months_per_period": settings.months_per_period,
        "base_currency": settings.base_currency,
        "gross_margin": settings.gross_margin,
        "attribution_share": settings.attribution_share,
        "risk_adjustment": settings.risk_adjustment,
        "discount_rate": settings.discount_rate,
        "arpa_monthly": settings.arpa_monthly,
        "counterfactual_method": settings.counterfactual.method,
        "control_column": control.column if control else None,
        "normalise_by": settings.counterfactual.normalise_by,
        "uncertainty_draws": settings.uncertainty.draws,
        "uncertainty_seed": settings.uncertainty.seed,
        "tei_horizon_years": settings.tei.horizon_years,
        "tei_cost_risk_adjustment": settings.tei.cost_risk_adjustment,
        "closed_stage_pattern": CLOSED_STAGE_WORDS,
        "control_values": list(control.values) if control else [],  # VARCHAR[]
        "accounts": dict(settings.finance.accounts),  # MAP(VARCHAR, VARCHAR): GL account -> category
    }


def set_run_variables(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Expose the run's parameters to the SQL models as DuckDB variables (bound, never spliced)."""
    for name, value in run_variables(settings).items():
        if isinstance(value, list):
            con.execute(f"SET VARIABLE {name} = CAST($values AS VARCHAR[])", {"values": value})
        elif isinstance(value, dict):
            con.execute(f"SET VARIABLE {name} = MAP($keys, $values)",
                        {"keys": list(value), "values": list(value.values())})
        else:
            con.execute(f"SET VARIABLE {name} = $value", {"value": value})


def raw_file_of(working: Path) -> Path:
    """The raw companion of a working file: crm_roi.duckdb -> crm_roi.raw.duckdb."""
    return working.with_suffix(".raw.duckdb")


def open_with_raw(
    path: Path, read_only: bool = False, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """The working file, with its raw companion attached as catalog `raw`: what a data team opens to read raw."""
    raw_file = raw_file_of(path)
    new_files = [] if read_only else [p for p in (path, raw_file) if not p.exists()]
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = _open(path, read_only, memory_limit)
    except duckdb.IOException as exc:
        if not _is_lock_conflict(exc):
            raise
        raise _locked_error(path, exc) from None
    try:
        if raw_file.exists() or not read_only:
            mode = " (READ_ONLY)" if read_only else ""
            con.execute(f"ATTACH $file AS {RAW_CATALOG}{mode}", {"file": str(raw_file)})
    except duckdb.IOException as exc:
        con.close()
        if not _is_lock_conflict(exc):
            raise
        raise _locked_error(raw_file, exc) from None
    for created in new_files:  # private from the start: it holds CRM data
        os.chmod(created, 0o600)
    return con


@contextmanager
def connect(
    path: Path, settings: Settings | None = None, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection in UTC with the shared and ROI macros loaded (and the run's variables, if given)."""
    memory_limit = settings.memory_limit if settings else None
    con = open_with_raw(path, read_only, memory_limit)
    try:
        _prepare(con, settings, read_only)
        yield con
    finally:
        con.close()


@contextmanager
def in_memory(settings: Settings | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A warehouse that lives in memory only, prepared as `connect` prepares a file: for checks
    that must not create or touch any file (`crm-roi validate`, `crm-roi init`); with no temp
    directory DuckDB cannot spill to disk either."""
    con = duckdb.connect(":memory:", config={"temp_directory": ""})
    try:
        con.execute(f"ATTACH ':memory:' AS {RAW_CATALOG}")
        _prepare(con, settings, read_only=False)
        yield con
    finally:
        con.close()


def _prepare(con: duckdb.DuckDBPyConnection, settings: Settings | None, read_only: bool) -> None:
    """UTC, the shared macros, the run's variables (if given) and, when writable, the schemas."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute(sql_text("macros"))
    con.execute(sql_text("roi_macros"))
    if settings is not None:
        set_run_variables(con, settings)
    if not read_only:
        ensure_schemas(con)


def wait_until_writable(path: Path) -> None:
    """Wait (up to the lock wait) until no other process holds the file; raise WarehouseLocked if one still does.

    Run before a job starts, so a file held elsewhere fails the run with one line
    instead of one failed step per asset.
    """
    if not path.exists():
        return
    try:
        _open(path, read_only=False).close()
    except duckdb.IOException as exc:
        if not _is_lock_conflict(exc):
            raise
        raise _locked_error(path, exc) from None


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: a failure rolls back, so the last good state stays."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _raw_table_ddl(name: str) -> str:
    """raw.<name>: the stream's typed columns, the text of rows that did not parse, where each row came from."""
    columns = [f"{c} {SQL_TYPES[kind]}" for c, kind in CANONICAL_STREAMS[name].columns.items()]
    columns += [f"{TEXT_COLUMN} MAP(VARCHAR, VARCHAR)", *(f"{c} {kind}" for c, kind in RAW_META_COLUMNS.items())]
    return f"CREATE TABLE IF NOT EXISTS raw.main.{name} ({', '.join(columns)})"


def _schema_version() -> str:
    tables = [_raw_table_ddl(name) for name in CANONICAL_STREAMS]
    return hashlib.sha256(repr((tables, sql_text("raw/bookkeeping"))).encode()).hexdigest()


def _create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The schemas and tables both files need, created where missing (and widened where an older build made them)."""
    for schema in WORKING_SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute("CREATE SEQUENCE IF NOT EXISTS raw.main.batch_seq START 1")
    for name, stream in CANONICAL_STREAMS.items():
        _refuse_text_raw(con, name)
        con.execute(_raw_table_ddl(name))
        for column, kind in stream.columns.items():  # a file made by an older build gains new canonical columns
            con.execute(f"ALTER TABLE raw.main.{name} ADD COLUMN IF NOT EXISTS {column} {SQL_TYPES[kind]}")
    con.execute(sql_text("raw/bookkeeping"))


def _refuse_text_raw(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Raise RawFileOutdated if raw.<name> is a table of a build that landed every value as text (no `_text`)."""
    (columns,) = con.execute(
        "SELECT list(column_name) FROM duckdb_columns() WHERE database_name = $raw AND schema_name = 'main' "
        "AND table_name = $name", {"raw": RAW_CATALOG, "name": name}).fetchone()
    if columns and TEXT_COLUMN not in columns:
        (path,) = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = $raw",
                              {"raw": RAW_CATALOG}).fetchone()
        raise RawFileOutdated(
            f"{path}: raw.{name} was landed as text by an older build of crm-roi; move the file aside and "
            "run again (every export file is landed again, API sources sync in full)")


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    """Create the schemas and tables fresh files need (or files an older release made).

    Every step opens a connection, so the DDL runs only when a file's recorded schema
    version differs from this release's: one query instead of ~80 statements. Each
    file records it, so a raw file that was deleted or replaced is noticed.
    """
    version = _schema_version()
    recorded = con.execute(
        "SELECT database_name FROM duckdb_tables() WHERE table_name = 'schema_version' "
        "AND (database_name, schema_name) IN (('raw', 'main'), (current_database(), 'bookkeeping'))"
    ).fetchall()
    if len(recorded) == 2 and con.execute(
        "SELECT (SELECT version FROM raw.main.schema_version) = $v "
        "AND (SELECT version FROM bookkeeping.schema_version) = $v", {"v": version}
    ).fetchall() == [(True,)]:  # fetched to the end: an open result blocks the relation API
        return
    _create_tables(con)
    for table in ("raw.main.schema_version", "bookkeeping.schema_version"):  # one file per transaction
        with transaction(con):
            con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT $version AS version", {"version": version})
