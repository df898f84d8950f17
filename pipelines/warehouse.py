"""The DuckDB file: opening it, the run's parameters, and running `sql/` files.

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

from connectors.files.profiles import CANONICAL_COLUMNS
from pipelines.config import Settings

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
LOCK_WAIT_SECONDS = float(os.environ.get("CRM_ROI_LOCK_WAIT_SECONDS", "300"))
RAW_META_COLUMNS = (
    "_source VARCHAR NOT NULL, _file VARCHAR, _row_number BIGINT, "
    "_batch_id BIGINT NOT NULL, _loaded_at TIMESTAMP NOT NULL"
)
RAW_STREAMS = (*CANONICAL_COLUMNS,)


class WarehouseLocked(RuntimeError):
    """Another process held the DuckDB file for longer than the lock wait: a user-facing, one-line error."""


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
    return duckdb.connect(str(path), read_only=read_only, config=config)


def sql_text(name: str) -> str:
    """A model from `sql/`, e.g. 'kpi/periodic'."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def set_run_variables(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Expose the run's parameters to the SQL models as DuckDB variables (bound, never spliced)."""
    values = {
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
    }
    for name, value in values.items():
        con.execute(f"SET VARIABLE {name} = $value", {"value": value})
    accounts = settings.finance.accounts
    con.execute(
        "SET VARIABLE accounts = MAP($accounts, $categories)",
        {"accounts": list(accounts), "categories": list(accounts.values())},
    )


@contextmanager
def connect(
    path: Path, settings: Settings | None = None, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection in UTC with the shared macros loaded (and the run's variables, if given)."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not path.exists()
    try:
        con = _open(path, read_only, settings.memory_limit if settings else None)
    except duckdb.IOException as exc:
        if not _is_lock_conflict(exc):
            raise
        raise _locked_error(path, exc) from None
    try:
        if not read_only and new_file:
            os.chmod(path, 0o600)
        con.execute("SET TimeZone = 'UTC'")
        con.execute(sql_text("macros"))
        if settings is not None:
            set_run_variables(con, settings)
        if not read_only:
            ensure_schemas(con)
        yield con
    finally:
        con.close()


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


def _schema_version() -> str:
    return hashlib.sha256(repr((CANONICAL_COLUMNS, sql_text("raw/bookkeeping"))).encode()).hexdigest()


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    """Create the schemas and the landing tables a fresh file needs (or a file an older release made).

    Every step opens a connection, so the DDL runs only when the file's recorded
    schema version differs from this release's: one query instead of ~80 statements.
    """
    version = _schema_version()
    try:
        if con.execute("SELECT version FROM raw.schema_version").fetchall() == [(version,)]:
            return
    except duckdb.CatalogException:
        pass
    for schema in ("raw", "staging", "quarantine", "kpi", "roi"):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute("CREATE SEQUENCE IF NOT EXISTS raw.batch_seq START 1")
    for stream, columns in CANONICAL_COLUMNS.items():
        cols = ", ".join(f"{c} VARCHAR" for c in columns)
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.{stream} ({cols}, {RAW_META_COLUMNS})")
        for column in columns:  # a file made by an older release gains new canonical columns
            con.execute(f"ALTER TABLE raw.{stream} ADD COLUMN IF NOT EXISTS {column} VARCHAR")
    con.execute(sql_text("raw/bookkeeping"))
    with transaction(con):
        con.execute("CREATE OR REPLACE TABLE raw.schema_version AS SELECT $version AS version", {"version": version})


def table_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Row count of a whitelisted `schema.table` name."""
    schema, name = table.split(".")
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchone()[0]
    if not exists:
        return 0
    return con.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0]  # noqa: S608 (checked above)
