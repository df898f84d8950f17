"""Run a Pandera schema over a DuckDB table in Arrow batches.

Pandera's polars backend checks the data only on an eager DataFrame (on a
LazyFrame it checks the schema alone), and a whole large table must never sit
in Python memory: so the table is streamed as Arrow record batches, each turned
into a polars DataFrame without copying, validated, and dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import pandera.polars as pa
import polars as pl

BATCH_ROWS = 250_000
SAMPLE_SIZE = 5


@dataclass
class ValidationOutcome:
    rows_checked: int = 0
    failing_rows: int = 0
    failures_by_check: dict[str, int] = field(default_factory=dict)
    sample: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0


def validate_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    schemas: Sequence[type[pa.DataFrameModel]],
    after_batch: int | None = None,
) -> list[ValidationOutcome]:
    """Validate the rows of `table` (a whitelisted name) from batches after `after_batch` (None: every row).

    One pass for all of a table's schemas, reading only the columns they name:
    reading 5M deals once per schema, every column, cost three times the checks.
    """
    outcomes = [ValidationOutcome() for _ in schemas]
    relation = con.table(table)
    if after_batch is not None:
        relation = relation.filter(duckdb.ColumnExpression("batch_id") > duckdb.ConstantExpression(after_batch))
    # A column a schema names but the table lacks is left out here, so Pandera reports it.
    named = {column for schema in schemas for column in schema.to_schema().columns}
    relation = relation.select(*[c for c in relation.columns if c in named])
    for batch in relation.to_arrow_reader(BATCH_ROWS):
        frame = pl.from_arrow(batch)
        for schema, outcome in zip(schemas, outcomes, strict=True):
            outcome.rows_checked += frame.height
            try:
                schema.validate(frame, lazy=True)
            except pa.errors.SchemaErrors as errors:
                _record(outcome, errors.failure_cases, frame)
    return outcomes


def _record(outcome: ValidationOutcome, cases: pl.DataFrame, frame: pl.DataFrame) -> None:
    row_level = cases.filter(pl.col("index").is_not_null())
    # A schema-level failure (a wrong dtype, a missing column) fails every row.
    outcome.failing_rows += (
        frame.height if row_level.height < cases.height else row_level["index"].n_unique()
    )
    for check, count in cases.group_by("check").len().iter_rows():
        outcome.failures_by_check[check] = outcome.failures_by_check.get(check, 0) + count
    room = SAMPLE_SIZE - len(outcome.sample)
    if room > 0:
        outcome.sample.extend(
            {
                "column": row.get("column"),
                "check": row.get("check"),
                "value": None if row.get("failure_case") is None else str(row["failure_case"]),
            }
            for row in cases.head(room).iter_rows(named=True)
        )
