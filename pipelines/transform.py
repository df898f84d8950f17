"""Run the `sql/` models of the registry: staging (with quarantine), KPI and ROI tables.

Each table is replaced in one transaction, so a reader or a failed run sees the
previous complete table or the new complete table, never a mix.

The staging model contract (every sql/staging/<table>.sql honours it):
- It is one SELECT over raw.<table> (and other staging tables, e.g. staging.fx_rates)
  returning the columns the registry declares plus `_key` (the quarantine key),
  `_reasons` (the row rules the row broke; empty: it is valid) and `_raw_rowid` (its
  raw row, shown as the quarantine payload).
- It parses nothing: raw holds typed values, each parsed once at landing, when reading the
  file or API page was the pass over every value anyway (connectors/contract.py::typed_rows).
  Parsing in staging, from raw text, read and parsed every value a second time in every full
  build. Only a row holding a value that did not parse keeps the text of all its values, in
  `_text`: a value is "unparseable" when it is null with text in `_text`, "missing" when it
  is null without, and quarantine shows such a row as it came.
- Versions of a key are collapsed with the `last_occurrence` macro (sql/macros.sql).
- A keyed model (its stream has a key) reads its raw rows through the `scoped` and `input`
  CTEs that sql/macros.sql describes. A key-scoped build fills the temp table `scope_keys`
  with the keys new batches touched (in any source) and sets the variable `scope_after` to
  the last batch of the previous build; every other build leaves `scope_after` unset and
  reads every row.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import duckdb

from connectors.contract import CANONICAL_STREAMS, TEXT_COLUMN, TIMESTAMP
from pipelines.config import ConfigError
from pipelines.models import BUILD_COLUMNS, REGISTRY, Table
from pipelines.sql_files import sql_text
from pipelines.warehouse import transaction

STAGING_TABLES = tuple(t.short_name for t in REGISTRY.staging)
MART_TABLES = tuple(t.name for t in REGISTRY.marts)
KEYED_TABLES = {t.short_name: t.key for t in REGISTRY.staging if t.key}


@dataclass(frozen=True)
class StagingResult:
    rows: int
    rejected: int


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def _staging(table: str) -> Table:
    if table not in STAGING_TABLES:
        raise ValueError(f"unknown staging table {table!r}")
    return REGISTRY.table(f"staging.{table}")


def model_fingerprint(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """A digest of how staging.<table> is computed: its model, the macros, run settings and upstream tables."""
    spec = _staging(table)
    variables = [
        con.execute("SELECT getvariable($name)", {"name": name}).fetchone()[0] for name in sorted(spec.variables)
    ]
    upstream = [inputs_fingerprint(con, dep.split(".")[1]) for dep in sorted(spec.reads)
                if dep.startswith("staging.")]
    return _digest(sql_text("macros"), sql_text(spec.model), *variables, *upstream)


def _raw_state(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, int | None]:
    """raw.<table>'s row count and last batch: they stand in for its content.

    Raw rows are only appended with a new batch id, and never removed (an API
    upsert, a full reload) without the count of older rows dropping.
    """
    return con.execute(
        f"SELECT count(*), max(_batch_id) FROM raw.{table}"  # noqa: S608 (a registry table)
    ).fetchone()


def inputs_fingerprint(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The model's fingerprint plus the raw table's state: what staging.<table> holds follows from it."""
    return _digest(model_fingerprint(con, table), *_raw_state(con, table))


@dataclass(frozen=True)
class _BuildState:
    model_fingerprint: str
    raw_rows: int
    raw_last_batch: int | None


def _build_state(con: duckdb.DuckDBPyConnection, table: str) -> _BuildState | None:
    row = con.execute(
        "SELECT model_fingerprint, raw_rows, raw_last_batch FROM bookkeeping.build_state WHERE table_name = ?",
        [table],
    ).fetchall()
    return _BuildState(*row[0]) if row else None


def _appended_after(con: duckdb.DuckDBPyConnection, table: str, model: str, previous: _BuildState | None) -> int | None:
    """The last batch of the previous build when raw.<table> only gained rows since, under the same model.

    Then only the keys the new batches touch need rebuilding; otherwise (None) the whole table does.
    """
    if table not in KEYED_TABLES or previous is None or previous.model_fingerprint != model:
        return None
    if previous.raw_last_batch is None:
        return None
    kept = con.execute(
        f"SELECT count(*) FROM raw.{table} WHERE _batch_id <= ?",  # noqa: S608 (a registry table)
        [previous.raw_last_batch],
    ).fetchone()[0]
    return previous.raw_last_batch if kept == previous.raw_rows else None


def _counts(con: duckdb.DuckDBPyConnection, table: str) -> StagingResult:
    return StagingResult(
        rows=con.execute(f"SELECT count(*) FROM staging.{table}").fetchone()[0],  # noqa: S608 (a registry table)
        rejected=con.execute(
            "SELECT count(*) FROM quarantine.rejected_rows WHERE table_name = ?", [table]
        ).fetchone()[0],
    )


def build_staging(con: duckdb.DuckDBPyConnection, table: str) -> StagingResult:
    """Bring staging.<table> and its quarantined rows up to date with raw, atomically.

    Skipped when nothing it is computed from changed since the last build; when raw
    only gained rows, only the keys those rows touch are rebuilt, so a nightly run
    that moves 1% of the deals costs about 1% of a full build, and ends with exactly
    the rows a full build would give.
    """
    spec = _staging(table)
    model = model_fingerprint(con, table)
    raw_rows, raw_last_batch = _raw_state(con, table)
    previous = _build_state(con, table)
    if previous == _BuildState(model, raw_rows, raw_last_batch):
        return _counts(con, table)
    after = _appended_after(con, table, model, previous)
    with transaction(con):
        if after is None:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _typed AS {sql_text(spec.model)}")
            con.execute(
                f"CREATE OR REPLACE TABLE staging.{table} AS "  # noqa: S608 (a registry table)
                f"SELECT * EXCLUDE ({', '.join(BUILD_COLUMNS)}) FROM _typed WHERE len(_reasons) = 0"
            )
            con.execute("DELETE FROM quarantine.rejected_rows WHERE table_name = ?", [table])
        else:
            _rebuild_affected_keys(con, spec, after)
        _quarantine(con, table)
        con.execute("DROP TABLE _typed")
        result = _counts(con, table)
        # Rows from batches already validated are the same rows as before, unless the model,
        # its settings or an upstream table changed: then every row is checked again.
        con.execute(
            "INSERT OR REPLACE INTO bookkeeping.build_state (table_name, model_fingerprint, raw_rows, "
            "raw_last_batch, built_at, validated_batch, accepted_batch) VALUES ($table, $model, $rows, $last, "
            "now()::TIMESTAMP, (SELECT validated_batch FROM bookkeeping.build_state "
            "WHERE table_name = $table AND model_fingerprint = $model), "
            "(SELECT accepted_batch FROM bookkeeping.build_state WHERE table_name = $table))",
            {"table": table, "model": model, "rows": raw_rows, "last": raw_last_batch},
        )
    return result


def _quarantine(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Insert the rejected rows of `_typed` into quarantine, each with its raw row as JSON, file and line.

    The raw row is looked up for rejected rows only: serialising every row cost more than all
    the parsing put together. Its values are shown as text: as landed where a value did not
    parse (`_text`), else as read at landing (a timestamp in ISO 8601 UTC). A file row's line
    is its place among its batch's row ids (pipelines/raw_files.py); an API row keeps its place
    in its page (`_row_number`).
    """
    line = "coalesce(r._row_number, r.rowid - f.first_rowid + 1)"
    # A parsed timestamp is shown in ISO 8601 UTC ('2025-06-10T10:00:00Z'), as canonical exports write it.
    as_text = {TIMESTAMP: "replace(CAST(r.{c} AS VARCHAR), ' ', 'T') || 'Z'"}
    values = ", ".join(f"'{c}': CASE WHEN r.{TEXT_COLUMN} IS NULL THEN "
                       f"{as_text.get(kind, 'CAST(r.{c} AS VARCHAR)').format(c=c)} "
                       f"ELSE r.{TEXT_COLUMN}['{c}'] END" for c, kind in CANONICAL_STREAMS[table].columns.items())
    payload = (f"to_json({{{values}, '_source': r._source, '_file': r._file, '_row_number': {line}, "
               "'_batch_id': r._batch_id, '_loaded_at': r._loaded_at})")
    # Column names come from the contract, the table from the registry; values are bound.
    con.execute(
        "INSERT INTO quarantine.rejected_rows "  # noqa: S608
        f"SELECT $table, t.source, t._key, array_to_string(t._reasons, '; '), {payload}, r._file, {line}, "
        f"t.batch_id, now()::TIMESTAMP FROM _typed AS t JOIN raw.{table} AS r ON r.rowid = t._raw_rowid "
        f"JOIN (SELECT _batch_id, min(rowid) AS first_rowid FROM raw.{table} WHERE _batch_id IN "
        "(SELECT batch_id FROM _typed WHERE len(_reasons) > 0) GROUP BY ALL) AS f ON f._batch_id = r._batch_id "
        "WHERE len(t._reasons) > 0",
        {"table": table},
    )


def _rebuild_affected_keys(con: duckdb.DuckDBPyConnection, spec: Table, after: int) -> None:
    """Replace the staging and quarantine rows of the keys that batches after `after` brought.

    A key is rebuilt in every source that has it: every version of it is read again, so
    the rows come out as a full build gives them.
    """
    table, key = spec.short_name, spec.key
    # Table and key names come from the registry; values are bound.
    con.execute("DELETE FROM scope_keys")
    con.execute(
        "INSERT INTO scope_keys "  # noqa: S608
        f"SELECT DISTINCT nullif(trim({key}), '') FROM raw.{table} "
        f"WHERE _batch_id > $after AND nullif(trim({key}), '') IS NOT NULL",
        {"after": after},
    )
    con.execute("SET VARIABLE scope_after = $after", {"after": after})
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _typed AS {sql_text(spec.model)}")
    finally:
        con.execute("RESET VARIABLE scope_after")
    con.execute(
        f"DELETE FROM staging.{table} WHERE {key} IN (SELECT key FROM scope_keys)"  # noqa: S608
    )
    con.execute(
        f"INSERT INTO staging.{table} SELECT * EXCLUDE ({', '.join(BUILD_COLUMNS)}) FROM _typed "  # noqa: S608
        "WHERE len(_reasons) = 0"
    )
    con.execute(
        "DELETE FROM quarantine.rejected_rows WHERE table_name = $table AND key IN (SELECT key FROM scope_keys)",
        {"table": table},
    )
    con.execute("DELETE FROM scope_keys")


class UnsupportedByData(ConfigError):
    """A configured method the data cannot support (e.g. trend on a baseline month without revenue).

    The model stops with `unsupported_by_data(message)` (sql/roi_macros.sql); the message names the key.
    """


_UNSUPPORTED = re.compile(r"unsupported by the data: (.*)")


def build_mart(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Rebuild one KPI or ROI table from its model; returns its row count."""
    if table not in MART_TABLES:
        raise ValueError(f"unknown table {table!r}")
    with transaction(con):
        try:
            con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql_text(REGISTRY.table(table).model)}")
        except duckdb.InvalidInputException as exc:
            if unsupported := _UNSUPPORTED.search(str(exc)):
                raise UnsupportedByData(unsupported.group(1)) from None
            raise
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 (a registry table)
