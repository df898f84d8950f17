"""`crm-roi query`: one read-only query against the tables, printed as a table or as CSV.

Only statements that read are run (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN, PRAGMA),
on a read-only connection with external access off: a query cannot write a file (COPY ... TO,
EXPORT), attach another database or install an extension.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import duckdb
from tabulate import tabulate

from pipelines.config import ConfigError, load_settings
from pipelines.warehouse import open_with_raw

READING = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.PRAGMA}
DEMO_COPY = Path("crm_roi_demo.published.duckdb")  # where `crm-roi demo` publishes by default

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class NoTables(FileNotFoundError):
    """There is no DuckDB file to query yet."""


class NotAQuery(ValueError):
    """A statement that would write, attach or install: not what `crm-roi query` runs."""


def default_database(config_file: str | None) -> Path:
    """The analysts' copy to query: that of CRM_ROI_DUCKDB or of the config, else the demo's.

    So the first query after `make demo` works without flags, and a team's own copy wins
    once it exists. An explicit --config that does not load is the error it is.
    """
    candidates = []
    try:
        candidates.append(load_settings(config_file).published_path)
    except ConfigError:
        if config_file or os.environ.get("CRM_ROI_CONFIG"):
            raise
    candidates.append(DEMO_COPY.resolve())
    for path in candidates:
        if path.is_file():
            return path
    raise NoTables(f"no tables to query yet (looked for {', '.join(str(p) for p in candidates)}): "
                   "run `crm-roi run` or `crm-roi demo` first, or pass --db FILE")


def _reading_only(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise NotAQuery(str(exc).splitlines()[0]) from None
    for statement in statements:
        if statement.type not in READING:
            kind = statement.type.name.replace("LOAD", "INSTALL/LOAD")
            raise NotAQuery(f"crm-roi query only reads (SELECT, DESCRIBE, SUMMARIZE, ...); {kind} statements "
                            "are refused (crm-roi export writes files)")


def run_query(path: Path, sql: str) -> tuple[list[str], list[tuple]]:
    """The columns and rows of `sql` on the file at `path`, opened read-only (with its raw layer, if any)."""
    _reading_only(sql)
    if not path.is_file():
        raise NoTables(f"no DuckDB file at {path}: run `crm-roi run` (or `demo`) first")
    with open_with_raw(path, read_only=True) as con:
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        return columns, cursor.fetchall()


def looks_like_formula(value: object) -> bool:
    """Text a spreadsheet would run as a formula (OWASP CSV injection). Numbers, dates and nulls
    never are: a negative number is data, not a formula."""
    return isinstance(value, str) and value.startswith(FORMULA_PREFIXES)


def spreadsheet_safe(value: object) -> object:
    """CSV injection guard: formula-like text gets a leading single quote, so `=HYPERLINK(...)`
    from a CRM field is shown, never evaluated."""
    return "'" + value if looks_like_formula(value) else value


def write_csv(out: TextIO, columns: list[str], rows: Iterable[tuple]) -> None:
    writer = csv.writer(out)
    writer.writerow([spreadsheet_safe(c) for c in columns])
    writer.writerows([spreadsheet_safe(v) for v in row] for row in rows)


def as_table(columns: list[str], rows: list[tuple]) -> str:
    return tabulate(rows, headers=columns, tablefmt="simple", floatfmt=",.4f")
