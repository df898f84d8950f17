"""`crm-roi query`: one read-only query against the tables, printed as a table or as CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from tabulate import tabulate

from pipelines.warehouse import open_with_raw

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class NoTables(FileNotFoundError):
    """There is no DuckDB file to query yet."""


def run_query(path: Path, sql: str) -> tuple[list[str], list[tuple]]:
    """The columns and rows of `sql` on the file at `path`, opened read-only (with its raw layer, if any)."""
    if not path.is_file():
        raise NoTables(f"no DuckDB file at {path}: run `crm-roi run` (or `demo`) first")
    with open_with_raw(path, read_only=True) as con:
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
