"""One factory that turns the Pandera schemas into Dagster asset checks.

Checks are returned with the staging materialisation, so their history shows in
the UI; blocking ones stop the KPI and ROI tables from being built on a table
that broke its contract.
"""

from __future__ import annotations

import dagster as dg
import duckdb

from pipelines.assets import table_key
from pipelines.models import Table
from pipelines.validation import validate_table


def check_specs(spec: Table) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name=f"pandera_{check.name}", asset=table_key(spec.name), blocking=check.blocking,
                          description=check.description)
        for check in spec.checks
    ]


def run_checks(con: duckdb.DuckDBPyConnection, spec: Table) -> list[dg.AssetCheckResult]:
    """Check the rows not yet validated; once every check passes, they never need checking again.

    bookkeeping.build_state.validated_batch marks the rows (by raw batch) that passed every check
    under the current model, so a nightly run checks the rows that arrived since, not millions
    of unchanged ones. A failing check leaves the mark where it was, so the next run checks
    the same rows again and the failure keeps showing until the data is fixed.
    """
    table = spec.short_name
    after = con.execute(
        "SELECT validated_batch FROM bookkeeping.build_state WHERE table_name = ?", [table]
    ).fetchall()
    after_batch = after[0][0] if after else None
    results = []
    outcomes = validate_table(con, spec.name, [check.schema for check in spec.checks], after_batch)
    for check, outcome in zip(spec.checks, outcomes, strict=True):
        results.append(
            dg.AssetCheckResult(
                check_name=f"pandera_{check.name}",
                asset_key=table_key(spec.name),
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN,
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
            f"UPDATE bookkeeping.build_state SET validated_batch = (SELECT max(batch_id) FROM {spec.name}) "  # noqa: S608
            "WHERE table_name = ?",
            [table],
        )
    return results
