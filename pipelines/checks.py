"""One factory that turns the Pandera schemas into Dagster asset checks.

Checks are returned with the staging materialisation, so their history shows in
the UI; blocking ones stop the KPI and ROI tables from being built on a table
that broke its contract.
"""

from __future__ import annotations

import dagster as dg
import duckdb

from pipelines.schemas import STAGING_SCHEMAS
from pipelines.validation import validate_table


def check_specs(table: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name=f"pandera_{name}",
            asset=dg.AssetKey(["staging", table]),
            blocking=blocking,
            description=(schema.__doc__ or f"staging.{table} honours its Pandera schema").strip(),
        )
        for name, schema, blocking in STAGING_SCHEMAS[table]
    ]


def run_checks(con: duckdb.DuckDBPyConnection, table: str) -> list[dg.AssetCheckResult]:
    results = []
    for name, schema, blocking in STAGING_SCHEMAS[table]:
        outcome = validate_table(con, f"staging.{table}", schema)
        results.append(
            dg.AssetCheckResult(
                check_name=f"pandera_{name}",
                asset_key=dg.AssetKey(["staging", table]),
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
                metadata={
                    "rows_checked": outcome.rows_checked,
                    "failing_rows": outcome.failing_rows,
                    "failures_by_check": dg.MetadataValue.json(outcome.failures_by_check),
                    "sample": dg.MetadataValue.json(outcome.sample),
                },
            )
        )
    return results
