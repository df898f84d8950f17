"""Write an API connector's pages into raw tables, one transaction per page.

The cursor per (source, stream) lives in raw.sync_state and moves only in the
transaction that commits the rows it covers: a crash loses at most the page in
flight, and the re-run fetches it again. Rows are upserted by key, so a page
read twice (a lookback window, a resumed run) never duplicates anything.

An incremental sync cannot see a record the vendor purged (HubSpot empties its
recycle bin after 90 days, Salesforce after 15, Pipedrive lists deleted deals
for 30 and deleted organizations not at all). A full sync can: what it did not
return is gone, and is marked deleted (see `_mark_gone`).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from connectors.contract import API_STREAM_TABLES, CANONICAL_STREAMS, TEXT_COLUMN, typed_rows
from connectors.http import ApiError, RequestStats
from connectors.records import ApiSource, TableRows
from pipelines.progress import progress
from pipelines.warehouse import transaction


@dataclass
class SyncResult:
    cursor_before: str | None = None
    cursor_after: str | None = None
    pages: int = 0
    new: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    gone: dict[str, int] = field(default_factory=dict)  # keys a full sync no longer found, marked deleted
    duration_s: float = 0.0
    error: str | None = None  # why the sync stopped early; what was committed before stays


def _sync_state(con: duckdb.DuckDBPyConnection, source: str, stream: str) -> tuple[str | None, int | None]:
    """The stored cursor, and the first batch of a full sync that has not ended yet."""
    row = con.execute(
        "SELECT cursor, full_sync_from FROM raw.sync_state WHERE source = ? AND stream = ?", [source, stream]
    ).fetchone()
    return row or (None, None)


def read_cursor(con: duckdb.DuckDBPyConnection, source: str, stream: str) -> str | None:
    return _sync_state(con, source, stream)[0]


def _write_cursor(con: duckdb.DuckDBPyConnection, source: str, stream: str, cursor: str,
                  full_sync_from: int | None) -> None:
    con.execute(
        "INSERT OR REPLACE INTO raw.sync_state (source, stream, cursor, updated_at, full_sync_from) "
        "VALUES (?, ?, ?, ?, ?)",
        [source, stream, cursor, dt.datetime.now(dt.UTC).replace(tzinfo=None), full_sync_from],
    )


# Tables of one row per record (keyed) that can say a record is deleted (is_deleted): deals
# and customers. A page holds such a record once, and a full sync can mark it deleted.
RECORD_TABLES = {name: stream.key for name, stream in CANONICAL_STREAMS.items()
                 if stream.key and "is_deleted" in stream.columns}


def _last_per_key(rows: list[dict[str, str | None]], key: str) -> list[dict[str, str | None]]:
    """A record a page holds twice (a vendor page sent twice within one commit) keeps its later copy."""
    keyed = {row.get(key) or f"\0{n}": row for n, row in enumerate(rows)}  # keyless rows stay, for staging to reject
    return list(keyed.values())


def _upsert(con: duckdb.DuckDBPyConnection, source: str, table: str, batch_id: int,
            part: TableRows, result: SyncResult) -> None:
    columns = list(CANONICAL_STREAMS[table].columns)
    if part.key_column not in columns:
        raise ValueError(f"{table} has no column {part.key_column}")
    keys = sorted({r.get(part.key_column) for r in part.rows if r.get(part.key_column)} | set(part.deleted_keys))
    # Identifiers come from the contract (checked above); every value is bound.
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
    rows = _last_per_key(part.rows, part.key_column) if table in RECORD_TABLES else part.rows
    data = pa.Table.from_pylist(
        [{c: row.get(c) for c in columns} for row in rows],
        schema=pa.schema([(c, pa.string()) for c in columns]),
    )
    con.register("_page", data)
    # The page's text is parsed once, here, by the same parsers as an export file's (typed_rows).
    landed = ", ".join((*columns, TEXT_COLUMN))
    try:
        con.execute(
            f"INSERT INTO raw.{table} ({landed}, _source, _file, _row_number, _batch_id, _loaded_at) "  # noqa: S608
            f"SELECT {landed}, $source, $file, row_number() OVER (), $batch, now()::TIMESTAMP "
            f"FROM ({typed_rows(table, {c: c for c in columns}, 'FROM _page')})",
            {"source": source, "file": f"api:{table}", "batch": batch_id},
        )
    finally:
        con.unregister("_page")
    result.updated[table] = result.updated.get(table, 0) + existing
    result.new[table] = result.new.get(table, 0) + len(keys) - len(part.deleted_keys) - existing
    if table == "deals":
        result.deleted += sum(1 for r in part.rows if r.get("is_deleted") == "true") + len(part.deleted_keys)


def _next_batch(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT nextval('raw.batch_seq')").fetchone()[0]


def _mark_gone(con: duckdb.DuckDBPyConnection, source: str, table: str, since_batch: int) -> int | None:
    """After a complete full sync: mark deleted every key of `source` it did not return.

    The upsert replaced every raw row of each key the sync returned, so a row that
    predates the sync (`since_batch`) is of a key the vendor no longer has. It is
    upserted too, as it was with is_deleted true, in a batch of its own and named
    in `_file`. If the record comes back, the next sync's upsert replaces it.
    None when the sync returned no row of the table: an empty answer is more likely a
    lost permission than a CRM emptied overnight, so nothing is marked.
    """
    key = RECORD_TABLES[table]
    # Identifiers come from RECORD_TABLES; every value is bound.
    if not con.execute(
        f"SELECT EXISTS (SELECT 1 FROM raw.{table} WHERE _source = $source AND _batch_id >= $since)",  # noqa: S608
        {"source": source, "since": since_batch},
    ).fetchone()[0]:
        return None
    columns = [*CANONICAL_STREAMS[table].columns, TEXT_COLUMN]
    values = ", ".join("true AS is_deleted" if c == "is_deleted" else c for c in columns)
    # Identifiers come from the contract and RECORD_TABLES; every value is bound.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _gone AS SELECT {values} FROM raw.{table} "  # noqa: S608
        f"WHERE _source = $source AND _batch_id < $since AND nullif(trim({key}), '') IS NOT NULL "
        "AND NOT coalesce(is_deleted, false)",
        {"source": source, "since": since_batch},
    )
    con.execute(
        f"DELETE FROM raw.{table} WHERE _source = $source AND {key} IN (SELECT {key} FROM _gone)",  # noqa: S608
        {"source": source},
    )
    con.execute(
        f"INSERT INTO raw.{table} ({', '.join(columns)}, _source, _file, _row_number, _batch_id, _loaded_at) "  # noqa: S608
        f"SELECT *, $source, 'api:{table} (gone from a full sync)', row_number() OVER (), $batch, "
        "now()::TIMESTAMP FROM _gone",
        {"source": source, "batch": _next_batch(con)},
    )
    gone = con.execute("SELECT count(*) FROM _gone").fetchone()[0]
    con.execute("DROP TABLE _gone")
    return gone


def _sync_detail(result: SyncResult, stats: RequestStats) -> str:
    """Pages, requests, retries and time spent waiting on the vendor's rate limit so far."""
    return (f"{result.pages:,} pages, {stats.requests:,} requests, {stats.retries:,} retries, "
            f"{stats.throttled_seconds + stats.backoff_seconds:,.1f} s waiting on rate limits and backoff")


def sync_stream(con: duckdb.DuckDBPyConnection, source_name: str, connector: ApiSource,
                stream: str, full: bool = False) -> SyncResult:
    """Pull one stream page by page; each page and its cursor commit together.

    A sync that reads the stream from its start (`full`, or no cursor yet) marks
    deleted, once it reaches the end, what the vendor no longer returns; so does the
    sync that resumes a full sync cut short.
    """
    started = time.monotonic()
    stored_cursor, stored_full_from = _sync_state(con, source_name, stream)
    result = SyncResult(cursor_before=stored_cursor, cursor_after=stored_cursor)
    cursor = None if full else stored_cursor
    # The first batch of the full sync this one is (set by its first page) or resumes; None if neither.
    full_from = None if cursor is None else stored_full_from
    with progress(f"{source_name}/{stream}", unit="records") as tracker:
        try:
            for page in connector.read(stream, cursor):
                with transaction(con):
                    batch_id = _next_batch(con)
                    if cursor is None and full_from is None:
                        full_from = batch_id
                    for table, part in page.tables.items():
                        _upsert(con, source_name, table, batch_id, part, result)
                    if page.cursor is not None:
                        _write_cursor(con, source_name, stream, page.cursor, full_from)
                        result.cursor_after = page.cursor
                result.pages += 1
                records = page.tables.get(API_STREAM_TABLES[stream][0])  # the stream's own records
                tracker.advance(len(records.rows) if records else 0, detail=_sync_detail(result, connector.stats))
        except ApiError as exc:
            # A quota, an outage or bad credentials stop this stream; pages committed so far
            # and their cursor stay, and the next run resumes from there.
            result.error = f"{type(exc).__name__}: {exc}"
    if full_from is not None and result.error is None:
        with transaction(con):
            for table in API_STREAM_TABLES[stream]:
                if table in RECORD_TABLES and (gone := _mark_gone(con, source_name, table, full_from)) is not None:
                    result.gone[table] = gone
            con.execute("UPDATE raw.sync_state SET full_sync_from = NULL WHERE source = ? AND stream = ?",
                        [source_name, stream])
    result.duration_s = round(time.monotonic() - started, 3)
    return result
