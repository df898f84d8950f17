"""Write an API connector's pages into raw tables, one transaction per page.

The cursor per (source, stream) lives in raw.sync_state and moves only in the
transaction that commits the rows it covers: a crash loses at most the page in
flight, and the re-run fetches it again. Rows are upserted by key, so a page
read twice (a lookback window, a resumed run) never duplicates anything.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from connectors.files.profiles import CANONICAL_COLUMNS
from connectors.http import ApiError
from connectors.records import ApiSource, TableRows
from pipelines.warehouse import transaction


@dataclass
class SyncResult:
    cursor_before: str | None = None
    cursor_after: str | None = None
    pages: int = 0
    new: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    duration_s: float = 0.0
    error: str | None = None  # why the sync stopped early; what was committed before stays


def read_cursor(con: duckdb.DuckDBPyConnection, source: str, stream: str) -> str | None:
    row = con.execute(
        "SELECT cursor FROM raw.sync_state WHERE source = ? AND stream = ?", [source, stream]
    ).fetchone()
    return row[0] if row else None


def _write_cursor(con: duckdb.DuckDBPyConnection, source: str, stream: str, cursor: str) -> None:
    con.execute(
        "INSERT OR REPLACE INTO raw.sync_state VALUES (?, ?, ?, ?)",
        [source, stream, cursor, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
    )


def _upsert(con: duckdb.DuckDBPyConnection, source: str, table: str, batch_id: int,
            part: TableRows, result: SyncResult) -> None:
    columns = list(CANONICAL_COLUMNS[table])
    if part.key_column not in columns:
        raise ValueError(f"{table} has no column {part.key_column}")
    keys = sorted({r.get(part.key_column) for r in part.rows if r.get(part.key_column)} | set(part.deleted_keys))
    # Identifiers come from CANONICAL_COLUMNS (checked above); every value is bound.
    existing = con.execute(
        f"SELECT count(DISTINCT {part.key_column}) FROM raw.{table} "  # noqa: S608
        f"WHERE _source = $source AND {part.key_column} IN (SELECT unnest($keys))",
        {"source": source, "keys": keys},
    ).fetchone()[0]
    con.execute(
        f"DELETE FROM raw.{table} WHERE _source = $source "  # noqa: S608
        f"AND {part.key_column} IN (SELECT unnest($keys))",
        {"source": source, "keys": keys},
    )
    data = pa.Table.from_pylist(
        [{c: row.get(c) for c in columns} for row in part.rows],
        schema=pa.schema([(c, pa.string()) for c in columns]),
    )
    con.register("_page", data)
    try:
        con.execute(
            f"INSERT INTO raw.{table} ({', '.join(columns)}, _source, _file, _row_number, _batch_id, _loaded_at) "  # noqa: S608
            f"SELECT {', '.join(columns)}, $source, $file, row_number() OVER (), $batch, now()::TIMESTAMP "
            "FROM _page",
            {"source": source, "file": f"api:{table}", "batch": batch_id},
        )
    finally:
        con.unregister("_page")
    result.updated[table] = result.updated.get(table, 0) + existing
    result.new[table] = result.new.get(table, 0) + len(keys) - len(part.deleted_keys) - existing
    if table == "deals":
        result.deleted += sum(1 for r in part.rows if r.get("is_deleted") == "true") + len(part.deleted_keys)


def sync_stream(con: duckdb.DuckDBPyConnection, source_name: str, connector: ApiSource,
                stream: str, full: bool = False) -> SyncResult:
    """Pull one stream page by page; each page and its cursor commit together."""
    started = time.monotonic()
    result = SyncResult(cursor_before=read_cursor(con, source_name, stream))
    result.cursor_after = result.cursor_before
    try:
        for page in connector.read(stream, None if full else result.cursor_before):
            with transaction(con):
                batch_id = con.execute("SELECT nextval('raw.batch_seq')").fetchone()[0]
                for table, part in page.tables.items():
                    _upsert(con, source_name, table, batch_id, part, result)
                if page.cursor is not None:
                    _write_cursor(con, source_name, stream, page.cursor)
                    result.cursor_after = page.cursor
            result.pages += 1
    except ApiError as exc:
        # A quota, an outage or bad credentials stop this stream; pages committed so far
        # and their cursor stay, and the next run resumes from there.
        result.error = f"{type(exc).__name__}: {exc}"
    result.duration_s = round(time.monotonic() - started, 3)
    return result
