"""`crm-roi export`: the tables handed to finance, as a workbook or as one file per table.

xlsx: the KPI and ROI tables, a sheet each, with money, percent and date formats, and an
assumptions sheet first, so the workbook says how its figures were made. parquet and csv:
every table of the analysts' copy, one file each. Text a spreadsheet would run as a formula
(a deal or stage name from the CRM starting with `=`) is written as text, never as a formula.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import duckdb

from pipelines.config import Settings
from pipelines.models import REGISTRY
from pipelines.query import NoTables, looks_like_formula, write_csv

Format = Literal["xlsx", "parquet", "csv"]
FORMATS: tuple[Format, ...] = ("xlsx", "parquet", "csv")
WORKBOOK_NAME = "crm_roi.xlsx"
ASSUMPTIONS_TABLE = "roi.assumptions"

# Fractions shown as percentages (0.25 -> 25 %); roi_pct is already x100 and stays a number.
PERCENT_COLUMNS = {"win_rate", "churn_rate", "retention_rate", "adoption_rate", "delta_pct", "roi",
                   "roi_trailing_12m", "roi_p05", "roi_p50", "roi_p95", "delta_roi", "tei_roi"}
RATIO_COLUMNS = {"gross_return_ratio"}
# Money columns, by the words their names are made of.
MONEY_WORDS = ("revenue", "benefit", "cost", "spend", "cac", "npv", "amount", "deal_size", "mrr", "pipeline_value")
FETCH_ROWS = 50_000
DATE = "yyyy-mm-dd"


def published_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The registry's published tables the file holds, in the registry's order."""
    present = {f"{s}.{t}" for s, t in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
    return [t.name for t in REGISTRY.tables if t.published and t.name in present]


def export(published: Path, out: Path, fmt: Format) -> list[Path]:
    """Write the tables of the analysts' copy `published` into the folder `out`; return the files written."""
    if not published.is_file():
        raise NoTables(f"no DuckDB file at {published}: run `crm-roi run` (or `demo`) first")
    out.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(published), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        if fmt == "xlsx":
            return [_workbook(con, out / WORKBOOK_NAME)]
        written = []
        for table in published_tables(con):
            path = out / f"{table}.{fmt}"
            if fmt == "parquet":
                con.table(table).write_parquet(str(path))
            else:
                _csv(con, table, path)
            written.append(path)
        return written


def _csv(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    cursor = con.execute(f"SELECT * FROM {table}")  # noqa: S608 (a registry table)
    columns = [d[0] for d in cursor.description]

    def rows() -> Iterator[tuple]:
        while batch := cursor.fetchmany(FETCH_ROWS):
            yield from batch

    with path.open("w", newline="", encoding="utf-8") as handle:
        write_csv(handle, columns, rows())


def number_format(column: str, duckdb_type: str, currency: str) -> str | None:
    """The spreadsheet format of a column: dates, percentages, money, counts; None for text."""
    if duckdb_type == "DATE":
        return DATE
    if duckdb_type.startswith("TIMESTAMP"):
        return "yyyy-mm-dd hh:mm:ss"
    if column in PERCENT_COLUMNS:
        return "0.0%"
    if column in RATIO_COLUMNS:
        return '0.00"x"'
    if duckdb_type in ("DOUBLE", "FLOAT") or duckdb_type.startswith("DECIMAL"):
        if any(word in column for word in MONEY_WORDS):
            return f'#,##0.00 "{currency}"'
        return "#,##0.00##"
    if duckdb_type in ("BIGINT", "INTEGER", "HUGEINT", "SMALLINT", "UBIGINT"):
        return "#,##0"
    return None


def _workbook(con: duckdb.DuckDBPyConnection, path: Path) -> Path:
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    assumptions = con.table(ASSUMPTIONS_TABLE).fetchall() if ASSUMPTIONS_TABLE in published_tables(con) else []
    currency = dict(assumptions).get("base_currency") or "USD"
    _assumptions_sheet(workbook, assumptions)
    for table in published_tables(con):
        if table.split(".")[0] in ("kpi", "roi") and table != ASSUMPTIONS_TABLE:
            _table_sheet(workbook, con, table, currency)
    workbook.save(path)
    return path


def _assumptions_sheet(workbook: object, assumptions: list[tuple[str, str | None]]) -> None:
    """Each setting behind the figures, with its meaning from the config's own descriptions."""
    sheet = workbook.create_sheet("assumptions")
    meanings = {name: field.description or "" for name, field in Settings.model_fields.items()}
    rows = [(name, _typed(value),
             meanings.get(name) or ("GL account -> cost category" if name.startswith("finance.accounts.") else ""))
            for name, value in assumptions]
    _fill(sheet, ["assumption", "value", "meaning"], rows, [None, None, None])


def _typed(value: str | None) -> object:
    """A setting's text as the number or date it is, so the cell computes."""
    if value is None:
        return None
    for parse in (int, float, dt.date.fromisoformat):
        try:
            return parse(value)
        except ValueError:
            continue
    return value


def _table_sheet(workbook: object, con: duckdb.DuckDBPyConnection, table: str, currency: str) -> None:
    cursor = con.execute(f"SELECT * FROM {table}")  # noqa: S608 (a registry table)
    columns = [d[0] for d in cursor.description]
    types = [str(t) for t in con.table(table).types]
    formats = [number_format(c, t, currency) for c, t in zip(columns, types, strict=True)]
    _fill(workbook.create_sheet(table), columns, cursor.fetchall(), formats)


def _fill(sheet: object, columns: list[str], rows: list[tuple], formats: list[str | None]) -> None:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    sheet.append(columns)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for r, row in enumerate(rows, start=2):
        for c, value in enumerate(row, start=1):
            if isinstance(value, str):
                value = ILLEGAL_CHARACTERS_RE.sub("", value)
            cell = sheet.cell(r, c, value)
            if looks_like_formula(value):
                cell.data_type, cell.quotePrefix = "s", True  # shown as typed, never evaluated
            elif value is not None and (fmt := formats[c - 1] or (DATE if isinstance(value, dt.date) else None)):
                cell.number_format = fmt
    for c, column in enumerate(columns, start=1):
        width = max([len(column), *(len(str(row[c - 1])) for row in rows[:200] if row[c - 1] is not None)])
        sheet.column_dimensions[get_column_letter(c)].width = min(max(width + 2, 10), 60)

