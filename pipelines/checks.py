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
    """Check the rows not yet validated; once every check passes, they never need checking again.

    bookkeeping.build_state.validated_batch marks the rows (by raw batch) that passed every check
    under the current model, so a nightly run checks the rows that arrived since, not millions
    of unchanged ones. A failing check leaves the mark where it was, so the next run checks
    the same rows again and the failure keeps showing until the data is fixed.
    """
    after = con.execute(
        "SELECT validated_batch FROM bookkeeping.build_state WHERE table_name = ?", [table]
    ).fetchall()
    after_batch = after[0][0] if after else None
    results = []
    specs = STAGING_SCHEMAS[table]
    outcomes = validate_table(con, f"staging.{table}", [schema for _, schema, _ in specs], after_batch)
    for (name, _, blocking), outcome in zip(specs, outcomes, strict=True):
        results.append(
            dg.AssetCheckResult(
                check_name=f"pandera_{name}",
                asset_key=dg.AssetKey(["staging", table]),
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
                metadata={
                    "rows_checked": outcome.rows_checked,
                    "rows_checked_before": dg.MetadataValue.text(
                        "none" if after_batch is None else f"rows from batches up to {after_batch}"
                    ),
                    "failing_rows": outcome.failing_rows,
                    "failures_by_check": dg.MetadataValue.json(outcome.failures_by_check),
                    "sample": dg.MetadataValue.json(outcome.sample),
                },
            )
        )
    if all(result.passed for result in results):
        con.execute(
            f"UPDATE bookkeeping.build_state SET validated_batch = (SELECT max(batch_id) FROM staging.{table}) "  # noqa: S608
            "WHERE table_name = ?",
            [table],
        )
    return results
