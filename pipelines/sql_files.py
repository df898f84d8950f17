"""The `sql/` models: their text, and what each reads and selects, from DuckDB's own parser.

A model's upstream tables, the run variables it reads and the columns it selects
are taken from its SQL rather than written down a second time, so the asset graph,
the staging fingerprints and the column checks of the registry cannot drift from
the SQL that actually runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import duckdb

# Schemas whose tables models may read: a reference to anything else is a CTE or a macro.
TABLE_SCHEMAS = ("raw", "staging", "quarantine", "kpi", "roi", "history")


def bundled(packaged: str, checkout: str) -> Path:
    """A folder shipped with crm-roi: inside the installed package (a wheel puts the SQL and the
    demo data at pipelines/<packaged>), else at <checkout> in a source checkout."""
    inside = Path(str(files("pipelines") / packaged))
    return inside if inside.is_dir() else Path(__file__).resolve().parent.parent / checkout


@cache
def sql_text(name: str) -> str:
    """A model or script from `sql/`, by path without the suffix, e.g. 'kpi/periodic'."""
    return (bundled("sql", "sql") / f"{name}.sql").read_text(encoding="utf-8")


@dataclass(frozen=True)
class ModelShape:
    """What one SELECT model reads and returns."""

    reads: frozenset[str]  # 'schema.table' names
    variables: frozenset[str]  # getvariable('...') names
    columns: tuple[str, ...]  # the final select list, in order
    functions: frozenset[str]  # every function and macro it calls


class ModelParseError(ValueError):
    """A model that DuckDB cannot parse, or whose select list cannot be named."""


@cache
def model_shape(name: str) -> ModelShape:
    """sql/<name>.sql's shape, parsed once."""
    return parse_model(name, sql_text(name))


@cache
def _parser() -> duckdb.DuckDBPyConnection:
    """One in-memory connection for every parse: opening one costs more than parsing a model."""
    return duckdb.connect()


def parse_model(name: str, sql: str) -> ModelShape:
    """Parse a model (DuckDB's json_serialize_sql) and collect its reads, variables, columns and calls."""
    cursor = _parser().cursor()
    tree = json.loads(cursor.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchone()[0])
    if tree.get("error"):
        raise ModelParseError(f"sql/{name}.sql: {tree.get('error_message', 'does not parse')}")
    (statement,) = tree["statements"]
    reads: set[str] = set()
    variables: set[str] = set()
    functions: set[str] = set()
    _walk(statement, reads, variables, functions)
    return ModelShape(frozenset(reads), frozenset(variables), _select_list(name, statement["node"]),
                      frozenset(functions))


def _walk(node: object, reads: set[str], variables: set[str], functions: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, reads, variables, functions)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "BASE_TABLE" and node.get("schema_name") in TABLE_SCHEMAS:
        reads.add(f"{node['schema_name']}.{node['table_name']}")
    if node.get("class") == "FUNCTION":
        functions.add(node["function_name"])
        constants = [_constant(arg.get("expression", {})) for arg in node.get("arguments", [])]
        if node.get("function_name") == "getvariable" and constants and constants[0]:
            variables.add(constants[0])
        # Table macros take the tables they read by name (e.g. fx_days('staging.fx_rates')).
        for text in constants:
            if text and text.split(".")[0] in TABLE_SCHEMAS and text.count(".") == 1:
                reads.add(text)
    for value in node.values():
        _walk(value, reads, variables, functions)


def _constant(node: dict) -> str | None:
    literal = node.get("literal") if node.get("class") == "CONSTANT" else None
    return literal["text"] if literal and literal.get("kind") == "STRING" else None


def _select_list(name: str, node: dict) -> tuple[str, ...]:
    while node.get("type") == "SET_OPERATION_NODE":  # a UNION names its columns in its first branch
        node = node.get("left") or node["children"][0]
    columns = []
    for expression in node.get("select_list", []):
        if expression.get("alias"):
            columns.append(expression["alias"])
        elif expression.get("class") == "COLUMN_REF":
            columns.append(expression["column_names"][-1])
        else:
            raise ModelParseError(f"sql/{name}.sql: name every column of the final SELECT (AS ...)")
    return tuple(columns)
