"""The KPI and ROI models on Spark: the same `sql/` files, transpiled from DuckDB to Spark SQL.

There is one source of SQL. A model is parsed with sqlglot (DuckDB dialect); the run variables it
reads (getvariable) become literals; the macros it calls (sql/macros.sql, sql/roi_macros.sql) are
expanded in place, table macros as subqueries, until none is left; the DuckDB idioms Spark lacks
are rewritten into Spark's own (below); and sqlglot writes Spark SQL. The models were written so
that every idiom has a Spark form that gives the same figures (docs/portability.md): a construct
with none is an error naming the model and the construct, never a silently different query.

The runner builds the KPI and ROI tables in a SparkSession from the tables they read (staging,
quarantine, and whether customers ever landed), exported from a DuckDB working file as parquet.
`python -m pipelines.portable --config crm_roi.yaml --out DIR` writes the statements instead, one
file per table in build order, for a shared warehouse (Databricks, a Spark cluster).

Needs the `spark` extra (sqlglot, pyspark) and, to run, a Java runtime.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import sqlglot
from sqlglot import exp

from pipelines.config import ConfigError, Settings, load_settings
from pipelines.models import REGISTRY, Table
from pipelines.sql_files import sql_text
from pipelines.warehouse import open_with_raw, run_variables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# The tables that move: every KPI and ROI table with a model, in build order (staging stays DuckDB).
SPARK_MODELS: tuple[Table, ...] = tuple(t for t in REGISTRY.marts if t.schema in ("kpi", "roi") and t.model)
MACRO_FILES = ("macros", "roi_macros")
_MAX_EXPANSION_ROUNDS = 30
# DuckDB's TIMESTAMP (no time zone), which Spark calls TIMESTAMP_NTZ.
_NAIVE_TIMESTAMP = exp.DataType.build("TIMESTAMP", dialect="duckdb")


class PortabilityError(ValueError):
    """A model uses something with no Spark form that gives the same result; the message names both."""


@dataclass(frozen=True)
class Macro:
    """A DuckDB macro: its parameters and its body, an expression or (a table macro) a query."""

    params: tuple[str, ...]
    body: exp.Expression
    table: bool


@cache
def macros() -> dict[str, Macro]:
    """Every macro of the macro files that sqlglot parses, by name (a staging-only one may not)."""
    found: dict[str, Macro] = {}
    for name in MACRO_FILES:
        for statement in duckdb.extract_statements(sql_text(name)):
            try:
                tree = sqlglot.parse_one(statement.query, read="duckdb")
            except sqlglot.errors.ParseError:
                continue  # e.g. named parameters with defaults (last_occurrence): no KPI or ROI model calls them
            if isinstance(tree, exp.Create) and str(tree.args.get("kind")).upper() == "MACRO":
                function = tree.this
                found[function.this.name.lower()] = Macro(
                    params=tuple(p.name for p in function.expressions),
                    body=tree.expression,
                    table=isinstance(tree.expression, exp.Query),
                )
    return found


def _literal(name: str, value: object) -> exp.Expression:
    """A run variable as a typed SQL literal (DuckDB dialect), the type DuckDB gives the bound value."""
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, dt.datetime):
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), _NAIVE_TIMESTAMP)
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.Type.DATE)
    if isinstance(value, int):
        return exp.Literal.number(value)
    if isinstance(value, float):
        return exp.cast(exp.Literal.number(repr(value)), exp.DataType.Type.DOUBLE)
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, list):
        return exp.cast(exp.Array(expressions=[exp.Literal.string(str(v)) for v in value]),
                        exp.DataType.build("VARCHAR[]", dialect="duckdb"))
    if isinstance(value, dict):
        return exp.Map(keys=exp.Array(expressions=[exp.Literal.string(str(k)) for k in value]),
                       values=exp.Array(expressions=[exp.Literal.string(str(v)) for v in value.values()]))
    raise PortabilityError(f"run variable {name}: no SQL literal for a {type(value).__name__}")


def _argument(value: exp.Expression) -> exp.Expression:
    """A macro argument as it sits in the body: parenthesised unless it is atomic."""
    atomic = (exp.Column, exp.Literal, exp.Func, exp.Paren, exp.Null, exp.Boolean, exp.Cast, exp.Subquery)
    return value.copy() if isinstance(value, atomic) else exp.Paren(this=value.copy())


def _substitute(macro: Macro, name: str, args: list[exp.Expression]) -> exp.Expression:
    if len(args) != len(macro.params):
        raise PortabilityError(f"macro {name} takes {len(macro.params)} arguments, called with {len(args)}")
    values = dict(zip(macro.params, args, strict=True))

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name in values:
            return _argument(values[node.name])
        return node

    body = macro.body.copy().transform(replace)
    return body if macro.table else _argument(body)  # a call is one operand, whatever its body's operators


def _table_name(node: exp.Expression) -> str:
    """query_table('name') -> name: a table macro reads the table its caller names."""
    if not isinstance(node, exp.Literal) or not node.is_string:
        raise PortabilityError("query_table() needs a table named by a string")
    return node.this


def expand(sql: str, variables: dict[str, object], model: str = "model") -> exp.Expression:
    """A DuckDB query with every run variable written as a literal and every macro call expanded."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    known = macros()
    for _ in range(_MAX_EXPANSION_ROUNDS):
        changed = False

        def replace(node: exp.Expression) -> exp.Expression:
            nonlocal changed
            if isinstance(node, exp.Anonymous):
                name = node.name.lower()
                if name == "getvariable":
                    variable = node.expressions[0].this if node.expressions else None
                    if variable not in variables:
                        raise PortabilityError(f"sql/{model}.sql reads run variable {variable!r}, which the run "
                                               "does not set (pipelines/warehouse.py::run_variables)")
                    changed = True
                    return _literal(variable, variables[variable])
                if name in known and not known[name].table:
                    changed = True
                    return _substitute(known[name], name, node.expressions)
            if isinstance(node, exp.Table) and isinstance(node.this, exp.Anonymous):
                name = node.this.name.lower()
                alias = node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(name))
                if name in known and known[name].table:
                    changed = True
                    body = _substitute(known[name], name, node.this.expressions)
                    return exp.Subquery(this=body, alias=alias.copy())
                if name == "query_table":
                    changed = True
                    return exp.Table(this=exp.to_identifier(_table_name(node.this.expressions[0])),
                                     alias=node.args.get("alias"))
            return node

        tree = tree.transform(replace)
        if not changed:
            return tree
    raise PortabilityError(f"sql/{model}.sql: macros still unexpanded after {_MAX_EXPANSION_ROUNDS} rounds "
                           "(a macro calling itself?)")


# -- DuckDB idioms and their Spark forms ----------------------------------------------------------

def _fold_case(node: exp.Expression) -> exp.Expression:
    """CASE <literal> WHEN <literal> ...: the branch the run's settings pick (Spark types every branch,
    so `CASE period WHEN 'month' THEN INTERVAL 1 MONTH ELSE INTERVAL 7 DAY END` would not bind)."""
    if not isinstance(node, exp.Case) or not isinstance(node.this, exp.Literal | exp.Null):
        return node
    if not all(isinstance(branch.this, exp.Literal) for branch in node.args.get("ifs") or []):
        return node
    operand = None if isinstance(node.this, exp.Null) else (node.this.is_string, node.this.this)
    for branch in node.args["ifs"]:
        if operand == (branch.this.is_string, branch.this.this):
            return branch.args["true"]
    # No branch matches: the default, else the CASE itself, a null its branches give a type.
    return node.args.get("default") or node


def _unfilter_window(node: exp.Expression) -> exp.Expression:
    """agg(x) FILTER (WHERE c) OVER (...) -> agg(CASE WHEN c THEN x END) OVER (...): Spark has FILTER
    for aggregates but not for window functions; both ignore the nulls the CASE leaves."""
    if not isinstance(node, exp.Window) or not isinstance(node.this, exp.Filter):
        return node
    aggregate, condition = node.this.this.copy(), node.this.expression.this.copy()
    kept = exp.Literal.number(1) if isinstance(aggregate.this, exp.Star) else aggregate.this
    aggregate.set("this", exp.Case(ifs=[exp.If(this=condition, true=kept)]))
    node.set("this", aggregate)
    return node


def _calendar_index(unit: str, value: exp.Expression) -> exp.Expression:
    year = exp.Year(this=value.copy())
    if unit == "MONTH":
        return exp.Add(this=exp.Mul(this=year, expression=exp.Literal.number(12)), expression=exp.Month(this=value))
    if unit == "QUARTER":
        return exp.Add(this=exp.Mul(this=year, expression=exp.Literal.number(4)), expression=exp.Quarter(this=value))
    return year


def _date_diff(node: exp.Expression) -> exp.Expression:
    """date_diff(unit, a, b) counts the unit's boundaries crossed (DuckDB); Spark's timestampdiff counts
    whole units elapsed. The boundary count in Spark: calendar indexes, dates, whole epoch seconds."""
    if not isinstance(node, exp.DateDiff):
        return node
    unit = node.text("unit").upper() or "DAY"
    start, end = node.expression, node.this
    if unit in ("YEAR", "QUARTER", "MONTH"):
        return exp.Paren(this=exp.Sub(this=_calendar_index(unit, end), expression=_calendar_index(unit, start)))
    if unit == "DAY":
        return exp.Anonymous(this="datediff", expressions=[exp.cast(end, "DATE"), exp.cast(start, "DATE")])
    if unit == "SECOND":
        return exp.Paren(this=exp.Sub(this=exp.Anonymous(this="unix_timestamp", expressions=[end]),
                                      expression=exp.Anonymous(this="unix_timestamp", expressions=[start])))
    raise PortabilityError(f"date_diff('{unit.lower()}', ...) has no Spark form here")


def _series(node: exp.Expression) -> exp.Expression:
    """FROM generate_series(a, b, step) AS t(s) / range(a, b) AS t(s) -> a subquery exploding a
    sequence (Spark's table functions take no column alias list)."""
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.GenerateSeries):
        return node
    series = node.this
    end = series.args["end"]
    if series.args.get("is_end_exclusive"):
        if series.args.get("step"):
            raise PortabilityError("range(a, b, step) has no Spark form here; use generate_series")
        end = exp.Sub(this=exp.Paren(this=end.copy()), expression=exp.Literal.number(1))
    alias = node.args.get("alias")
    if not alias or len(alias.columns) != 1:
        raise PortabilityError("name the column of a generate_series or range: AS t(column)")
    arguments = [series.args["start"], end] + ([series.args["step"]] if series.args.get("step") else [])
    exploded = exp.Explode(this=exp.Anonymous(this="sequence", expressions=arguments))
    select = exp.select(exp.alias_(exploded, alias.columns[0].name))
    return exp.Subquery(this=select, alias=exp.TableAlias(this=alias.this.copy()))


def _function(node: exp.Expression) -> exp.Expression:
    """Single functions with another name or shape in Spark."""
    if isinstance(node, exp.PercentileCont) and not isinstance(node.parent, exp.WithinGroup):
        # quantile_cont(x, p): Spark's percentile(x, p) interpolates linearly between the closest ranks too.
        return exp.Anonymous(this="percentile", expressions=[node.this, node.expression])
    if isinstance(node, exp.RegexpFullMatch):
        if not isinstance(node.expression, exp.Literal):
            raise PortabilityError("regexp_full_match() needs a literal pattern")
        return exp.RegexpLike(this=node.this, expression=exp.Literal.string(f"^(?:{node.expression.this})$"))
    if isinstance(node, exp.JSONExtractScalar) and not (isinstance(node.expression, exp.Literal)
                                                         and node.expression.this.startswith("$")):
        # json_extract_string(json, key): the key's value as text; Spark reads it by the path $.key.
        path = exp.Anonymous(this="concat", expressions=[exp.Literal.string("$."), node.expression])
        return exp.Anonymous(this="get_json_object", expressions=[node.this, path])
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name == "to_years":
            return exp.Anonymous(this="make_ym_interval", expressions=[*node.expressions, exp.Literal.number(0)])
        if name == "error":
            return exp.Anonymous(this="raise_error", expressions=node.expressions)
        if name == "timezone":
            zone, value = node.expressions
            if zone.name.upper() != "UTC":
                raise PortabilityError("timezone() converts to UTC only in Spark here (its session time zone)")
            return exp.cast(value, _NAIVE_TIMESTAMP)  # the UTC wall clock, as DuckDB gives it
        if name == "hash":
            raise PortabilityError("hash() is DuckDB's own; use the documented hash of sql/roi_macros.sql")
    return node


def _double_division(node: exp.Expression) -> exp.Expression:
    """x / 86400.0: DuckDB divides in DOUBLE whatever the operands; Spark keeps a decimal literal's
    DECIMAL and rounds the quotient to its scale. The literal as a DOUBLE gives DuckDB's quotient."""
    if isinstance(node, exp.Div):
        for key in ("this", "expression"):
            side = node.args.get(key)
            if isinstance(side, exp.Literal) and not side.is_string and "." in side.this:
                node.set(key, exp.cast(side, exp.DataType.Type.DOUBLE))
    return node


_WIDE_TYPES = {
    # Unsigned and 128-bit integers: decimals wide enough for every value they hold.
    exp.DataType.Type.UBIGINT: "DECIMAL(20, 0)",
    exp.DataType.Type.INT128: "DECIMAL(38, 0)",
    exp.DataType.Type.UINT128: "DECIMAL(39, 0)",
}


def _types(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.DataType) and node.this in _WIDE_TYPES:
        return exp.DataType.build(_WIDE_TYPES[node.this])
    return node


_OPERATORS = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod, exp.BitwiseAnd, exp.BitwiseOr,
              exp.BitwiseXor, exp.BitwiseLeftShift, exp.BitwiseRightShift)


def _explicit_precedence(node: exp.Expression) -> exp.Expression:
    """Parenthesise an operator inside another: DuckDB and Spark rank & and ^ against + differently, and
    xor(a, b) becomes a ^ b."""
    if isinstance(node, _OPERATORS):
        for key in ("this", "expression"):
            child = node.args.get(key)
            if isinstance(child, _OPERATORS):
                node.set(key, exp.Paren(this=child))
    return node


def _columns_of(source: exp.Expression, known: dict[str, list[str]]) -> list[str]:
    """The columns of a FROM source: a registry table or a CTE already seen."""
    name = f"{source.db}.{source.name}" if isinstance(source, exp.Table) and source.db else source.name
    if name not in known:
        raise PortabilityError(f"COLUMNS(*) over {name}, which is neither a registry table nor an earlier CTE")
    return known[name]


def _star_columns(star: exp.Star, columns: list[str]) -> list[str]:
    excluded = {c.name for c in star.args.get("except_") or star.args.get("except") or []}
    return [c for c in columns if c not in excluded]


def _expand_columns(tree: exp.Expression) -> exp.Expression:
    """DuckDB's COLUMNS(* EXCLUDE (...)) (optionally cast) and UNPIVOT ... IN (COLUMNS(...)), written out
    from the registry's columns, so that a KPI added to the registry reaches Spark too."""
    if not any(isinstance(n, exp.Columns) for n in tree.walk()):
        return tree
    known = {t.name: list(t.columns) for t in REGISTRY.tables}
    with_ = tree.args.get("with_") or tree.args.get("with")
    for cte in with_.expressions if with_ else []:
        select = cte.this
        source = select.args["from_"].this if "from_" in select.args else select.args["from"].this
        columns = _columns_of(source, known)
        expressions: list[exp.Expression] = []
        for item in select.expressions:
            inner = item.this if isinstance(item, exp.Cast) else item
            if isinstance(inner, exp.Columns):
                for column in _star_columns(inner.this, columns):
                    value = exp.column(column)
                    expressions.append(exp.alias_(exp.cast(value, item.to) if isinstance(item, exp.Cast) else value,
                                                  column))
            else:
                expressions.append(item)
        select.set("expressions", expressions)
        output: list[str] = []
        for pivot in source.args.get("pivots") or []:
            for field in pivot.args["fields"]:
                unpivoted = [c for e in field.expressions
                             for c in (_star_columns(e.this, columns) if isinstance(e, exp.Columns) else [e.name])]
                field.set("expressions", [exp.to_identifier(c) for c in unpivoted])
                columns = [c for c in columns if c not in unpivoted] + [field.this.name] + [
                    v.name for v in pivot.expressions]
        for item in select.expressions:
            output += columns if isinstance(item, exp.Star) else [item.alias_or_name]
        known[cte.alias_or_name] = output
    if any(isinstance(n, exp.Columns) for n in tree.walk()):
        raise PortabilityError("COLUMNS() outside a CTE's select list or UNPIVOT has no Spark form here")
    return tree


def spark_sql(table: str, settings: Settings) -> str:
    """The Spark SQL of a KPI or ROI table's model, with the run's settings written in."""
    spec = REGISTRY.table(table)
    if spec not in SPARK_MODELS:
        raise PortabilityError(f"{table} is not a KPI or ROI table with a model")
    return transpile(sql_text(spec.model), run_variables(settings), spec.model)


def transpile(sql: str, variables: dict[str, object], model: str = "model") -> str:
    """A DuckDB model with these run variables, as Spark SQL."""
    tree = _expand_columns(expand(sql, variables, model))
    try:
        for rewrite in (_fold_case, _unfilter_window, _date_diff, _series, _function, _double_division, _types,
                        _explicit_precedence):
            tree = tree.transform(rewrite)
    except PortabilityError as exc:
        raise PortabilityError(f"sql/{model}.sql: {exc}") from None
    return tree.sql(dialect="spark", identify=True, pretty=True)


# -- the runner -------------------------------------------------------------------------------------

def source_tables() -> tuple[str, ...]:
    """The tables the KPI and ROI models read and do not build (staging, quarantine, raw.customers)."""
    built = {t.name for t in SPARK_MODELS}
    return tuple(sorted({read for t in SPARK_MODELS for read in t.reads} - built))


def export_sources(working: Path, folder: Path) -> dict[str, Path]:
    """Write each source table of a DuckDB working file (with its raw companion) to folder/<table>.parquet."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    con = open_with_raw(working, read_only=True)
    try:
        for name in source_tables():
            paths[name] = folder / f"{name}.parquet"
            con.table(name).write_parquet(str(paths[name]))
    finally:
        con.close()
    return paths


_SAFE_NAME = re.compile(r"^[a-z_]+\.[a-z_]+$")


def build_on_spark(spark: SparkSession, working: Path, settings: Settings, folder: Path) -> list[str]:
    """Build every KPI and ROI table in `spark`, in build order, from a DuckDB working file's staging.

    The sources are exported to parquet under `folder` and registered as tables of the same names;
    each model's Spark SQL is written as a table of its own name. The session's time zone must be UTC,
    as DuckDB's connection is (timestamps are UTC wall clock). Returns the tables built.
    """
    if spark.conf.get("spark.sql.session.timeZone") != "UTC":
        raise PortabilityError("set spark.sql.session.timeZone to UTC: the models read UTC wall-clock timestamps")
    sources = export_sources(working, folder)
    for name in (*sources, *(t.name for t in SPARK_MODELS)):
        if not _SAFE_NAME.match(name):
            raise PortabilityError(f"{name}: not a schema.table name")
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {name.split('.')[0]}")
        spark.sql(f"DROP TABLE IF EXISTS {name}")
    for name, path in sources.items():
        spark.catalog.createTable(name, path=str(path), source="parquet")
    for spec in SPARK_MODELS:
        spark.sql(spark_sql(spec.name, settings)).write.mode("overwrite").saveAsTable(spec.name)
    return [t.name for t in SPARK_MODELS]


def write_spark_sql(settings: Settings, folder: Path) -> list[Path]:
    """One `CREATE OR REPLACE TABLE ... AS` file per KPI and ROI table, numbered in build order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, spec in enumerate(SPARK_MODELS, 1):
        path = folder / f"{number:02d}_{spec.name}.sql"
        path.write_text(f"CREATE OR REPLACE TABLE {spec.name} AS\n{spark_sql(spec.name, settings)}\n",
                        encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.portable",
                                     description="Write the KPI and ROI models as Spark SQL, with the run's settings.")
    parser.add_argument("--config", type=Path, default=Path("crm_roi.yaml"), help="the crm-roi config (crm_roi.yaml)")
    parser.add_argument("--out", type=Path, default=Path("spark_sql"), help="the folder to write the files into")
    args = parser.parse_args(argv)
    try:
        paths = write_spark_sql(load_settings(args.config), args.out)
    except (ConfigError, PortabilityError) as exc:
        sys.exit(str(exc))
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
