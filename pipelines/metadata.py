"""Metadata that lets a user judge an asset at a glance in the Dagster UI."""

from __future__ import annotations

import dagster as dg
import duckdb
from tabulate import tabulate

from pipelines.models import REGISTRY


def column_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    """The table's columns as DuckDB stored them, with the data dictionary's descriptions."""
    schema, name = table.split(".")
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name],
    ).fetchall()
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=col, type=dtype, description=REGISTRY.describe(table, col))
            for col, dtype in rows
        ]
    )


def markdown_preview(con: duckdb.DuckDBPyConnection, query: str, limit: int = 12) -> dg.MetadataValue:
    """A few rows as a markdown table; `query` is one of the project's own fixed SELECTs."""
    relation = con.sql(query).limit(limit)
    rows = [[_fmt(v) for v in row] for row in relation.fetchall()]
    return dg.MetadataValue.md(tabulate(rows, headers=relation.columns, tablefmt="github"))


def _fmt(value: object) -> object:
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return value


def table_metadata(con: duckdb.DuckDBPyConnection, table: str, rows: int) -> dict:
    return {
        "dagster/row_count": rows,
        "dagster/table_name": table,
        "dagster/column_schema": column_schema(con, table),
    }
