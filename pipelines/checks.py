"""Asset checks, all declared in the registry: Pandera schemas and the share of rows quarantined on
staging tables, SQL rules on the tables built from them.

Checks are returned with the materialisation, so their history shows in the UI;
blocking ones stop everything downstream (and the analysts' copy) from being built
on a table that broke its contract or lost too many rows. A failed warn-level check
carries a `message`, which the run summary prints.
"""

from __future__ import annotations

import dagster as dg
import duckdb

from connectors.contract import CANONICAL_STREAMS, NUMBER
from pipelines.assets import table_key
from pipelines.models import SqlCheck, Table
from pipelines.sql_files import sql_text
from pipelines.validation import validate_table

REJECTED_SHARE = "rejected_share"
TOP_REASONS = 3
SAMPLE_ROWS = 5


def _severity(blocking: bool) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN


def check_specs(spec: Table) -> list[dg.AssetCheckSpec]:
    """The checks of a staging table: its Pandera schemas and the rejected share."""
    pandera = [
        dg.AssetCheckSpec(name=f"pandera_{check.name}", asset=table_key(spec.name), blocking=check.blocking,
                          description=check.description)
        for check in spec.checks
    ]
    share = dg.AssetCheckSpec(
        name=REJECTED_SHARE, asset=table_key(spec.name), blocking=True,
        description="No source had more of the rows it landed quarantined than its max_rejected_share: a "
                    "misread export (day-first dates, a renamed column) fails the run instead of shrinking the KPIs.",
    )
    return [*pandera, share]


def _rejected_share(con: duckdb.DuckDBPyConnection, spec: Table, limits: dict[str, float]) -> dg.AssetCheckResult:
    """Per source, the share of the raw rows landed since the last accepted batch that were quarantined.

    The mark moves only when the check passes, so a run that quarantined too much keeps failing
    (and the analysts keep the last good copy) until the export or the config is fixed.
    """
    accepted = con.execute(
        "SELECT accepted_batch FROM bookkeeping.build_state WHERE table_name = ?", [spec.short_name]
    ).fetchall()
    after_batch = accepted[0][0] if accepted else None
    rows = con.execute(
        f"""
        WITH landed AS (
            SELECT _source AS source, count(*) AS landed FROM raw.{spec.short_name}
            WHERE _batch_id > $after GROUP BY ALL
        ),
        rejected AS (
            SELECT source, reason FROM quarantine.rejected_rows WHERE table_name = $table AND batch_id > $after
        ),
        reasons AS (
            SELECT source, reason, count(*) AS n FROM (
                SELECT source, unnest(string_split(reason, '; ')) AS reason FROM rejected
            ) GROUP BY ALL
        )
        SELECT l.source, l.landed,
               (SELECT count(*) FROM rejected AS r WHERE r.source = l.source) AS rejected,
               (SELECT list((reason, n) ORDER BY n DESC, reason)[:{TOP_REASONS}]
                FROM reasons AS r WHERE r.source = l.source) AS top
        FROM landed AS l ORDER BY l.source
        """,  # noqa: S608 (a registry table)
        {"after": -1 if after_batch is None else after_batch, "table": spec.short_name},
    ).fetchall()
    failures, shares = [], {}
    for source, landed, rejected, top in rows:
        share, limit = rejected / landed, limits.get(source, max(limits.values()))
        shares[source] = {"landed": landed, "quarantined": rejected, "share": round(share, 4), "limit": limit}
        if share > limit:
            reasons = ", ".join(f"{reason} ({n:,})" for reason, n in top or [])
            failures.append(
                f"{spec.name}: {share:.1%} of the {landed:,} rows source {source} landed were quarantined "
                f"(max_rejected_share {limit:g}); top reasons: {reasons}"
                + _decimal_comma_hint(con, spec.short_name, source, after_batch)
            )
    if not failures:
        con.execute(
            f"UPDATE bookkeeping.build_state SET accepted_batch = (SELECT max(_batch_id) FROM raw.{spec.short_name}) "  # noqa: S608
            "WHERE table_name = ?",
            [spec.short_name],
        )
    return dg.AssetCheckResult(
        check_name=REJECTED_SHARE,
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"message": "; ".join(failures), "by_source": dg.MetadataValue.json(shares)},
    )


def _decimal_comma_hint(con: duckdb.DuckDBPyConnection, stream: str, source: str, after_batch: int | None) -> str:
    """What to set when the quarantined numbers are written with a decimal comma ("1.234,50")."""
    numbers = [c for c, kind in CANONICAL_STREAMS[stream].columns.items() if kind == NUMBER]
    if not numbers:
        return ""
    values = ", ".join(f"payload->>'{c}'" for c in numbers)  # canonical column names
    example = con.execute(
        f"SELECT v FROM (SELECT unnest([{values}]) AS v FROM quarantine.rejected_rows "  # noqa: S608
        "WHERE table_name = $table AND source = $source AND batch_id > $after) "
        "WHERE parse_number(v) IS NULL AND decimal_comma_to_point(v) IS NOT NULL LIMIT 1",
        {"table": stream, "source": source, "after": -1 if after_batch is None else after_batch},
    ).fetchall()
    if not example:
        return ""
    return f"; numbers like '{example[0][0]}' use a decimal comma: set decimal_separator: ',' for {source}"


def run_checks(con: duckdb.DuckDBPyConnection, spec: Table, limits: dict[str, float]) -> list[dg.AssetCheckResult]:
    """Check the rows not yet validated; once every check passes, they never need checking again.

    bookkeeping.build_state.validated_batch marks the rows (by raw batch) that passed every check
    under the current model, so a nightly run checks the rows that arrived since, not millions
    of unchanged ones. A failing check leaves the mark where it was, so the next run checks
    the same rows again and the failure keeps showing until the data (or the config) is fixed.
    `limits` are the sources' max_rejected_share.
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
                passed=outcome.passed,
                severity=_severity(check.blocking),
                metadata={
                    "message": "" if outcome.passed else (
                        f"{spec.name}: {outcome.failing_rows:,} rows fail pandera_{check.name}: {check.description}"),
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
    results.append(_rejected_share(con, spec, limits))
    if all(result.passed for result in results):
        con.execute(
            f"UPDATE bookkeeping.build_state SET validated_batch = (SELECT max(_batch_id) FROM raw.{table}) "  # noqa: S608
            "WHERE table_name = ?",
            [table],
        )
    return results


def sql_check_specs(spec: Table) -> list[dg.AssetCheckSpec]:
    """The SQL rules of a table built from staging."""
    return [dg.AssetCheckSpec(name=check.name, asset=table_key(spec.name), blocking=check.blocking,
                              description=check.description) for check in spec.sql_checks]


def keep_previous_version(con: duckdb.DuckDBPyConnection, spec: Table) -> None:
    """Before a rebuild, keep the table as it was (temp `previous_version`) for checks that compare."""
    if not any("previous_version" in check.sql for check in spec.sql_checks):
        return
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ?", [spec.schema, spec.short_name],
    ).fetchall()[0][0]
    source = spec.name if exists else f"({sql_text(spec.model)}) LIMIT 0"
    con.execute(f"CREATE OR REPLACE TEMP TABLE previous_version AS SELECT * FROM {source}")  # noqa: S608


def _sql_check(con: duckdb.DuckDBPyConnection, spec: Table, check: SqlCheck) -> dg.AssetCheckResult:
    cursor = con.execute(check.sql)
    columns = [d[0] for d in cursor.description]
    failing = cursor.fetchall()
    sample = [dict(zip(columns, (str(v) for v in row), strict=True)) for row in failing[:SAMPLE_ROWS]]
    shown = "; ".join(", ".join(f"{v}" for v in row.values()) for row in sample)
    return dg.AssetCheckResult(
        check_name=check.name,
        passed=not failing,
        severity=_severity(check.blocking),
        metadata={
            "failing_rows": len(failing),
            "message": f"{spec.name}: {len(failing):,} rows fail {check.name} ({shown})" if failing else "",
            "sample": dg.MetadataValue.json(sample),
        },
    )


def run_sql_checks(con: duckdb.DuckDBPyConnection, spec: Table) -> list[dg.AssetCheckResult]:
    return [_sql_check(con, spec, check) for check in spec.sql_checks]
