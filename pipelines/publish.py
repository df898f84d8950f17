"""Publish the analyst copy: the tables analysts read, swapped in atomically.

DuckDB admits one writing process, and an open reader stops a writer from
opening the file. So analysts never open the working file: each run writes the
staging, quarantine, KPI and ROI tables into a new file and renames it over
the published one. A rename is atomic, and an analyst whose connection is open
keeps reading the old file until they reconnect: they see the old state or the
new state, never a mix, and they never block the nightly run.

The new file starts as a byte copy of the published one, and only the tables
rebuilt since it was published are written again: copying a file is a fraction
of re-encoding millions of unchanged staging rows.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from pipelines.warehouse import transaction

PUBLISHED_SCHEMAS = ("staging", "quarantine", "kpi", "roi")


def _changed_tables(con: duckdb.DuckDBPyConnection, tables: list[tuple[str, str]]) -> set[str]:
    """Tables to write again: staging tables rebuilt since they were published, and every derived table."""
    staging_unchanged = {
        f"staging.{name}" for (name,) in con.execute(
            "SELECT b.table_name FROM raw.build_state AS b JOIN raw.published_state AS p "
            "ON p.table_name = b.table_name AND p.built_at = b.built_at"
        ).fetchall()
    }
    names = {f"{schema}.{table}" for schema, table in tables}
    changed = {n for n in names if n.startswith("staging.") and n not in staging_unchanged}
    # KPI and ROI tables are small and rebuilt every run; the quarantine follows its staging tables.
    changed |= {n for n in names if n.startswith(("kpi.", "roi."))}
    if any(n.startswith("staging.") for n in changed):
        changed.add("quarantine.rejected_rows")
    return changed


def publish(con: duckdb.DuckDBPyConnection, target: Path) -> dict[str, int]:
    """Copy the published schemas from `con`'s database into `target`, atomically; return row counts."""
    staging_file = target.with_name(f".{target.name}.tmp")
    staging_file.unlink(missing_ok=True)
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema IN (SELECT unnest($schemas)) "
        "AND table_type = 'BASE TABLE' ORDER BY 1, 2",
        {"schemas": list(PUBLISHED_SCHEMAS)},
    ).fetchall()
    carried_forward = target.exists()
    if carried_forward:
        shutil.copyfile(target, staging_file)
        to_write = _changed_tables(con, tables)
    else:
        to_write = {f"{schema}.{table}" for schema, table in tables}
    con.execute("ATTACH $path AS publish_target", {"path": str(staging_file)})
    counts = {}
    try:
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS publish_target.{schema}")
        present = {f"{s}.{t}" for s, t in con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = 'publish_target'"
        ).fetchall()}
        for schema, table in tables:
            # Names come from the catalogue, quoted; nothing from config or data.
            if f"{schema}.{table}" in to_write or f"{schema}.{table}" not in present:
                con.execute(
                    f'CREATE OR REPLACE TABLE publish_target."{schema}"."{table}" AS '  # noqa: S608
                    f'SELECT * FROM "{schema}"."{table}"'
                )
            counts[f"{schema}.{table}"] = con.execute(
                f'SELECT count(*) FROM publish_target."{schema}"."{table}"'  # noqa: S608
            ).fetchone()[0]
        for stale in present - set(counts):  # a table the working file no longer has
            schema, table = stale.split(".")
            con.execute(f'DROP TABLE publish_target."{schema}"."{table}"')
    finally:
        con.execute("DETACH publish_target")
    os.chmod(staging_file, 0o600)
    os.replace(staging_file, target)
    # Recorded after the swap: a crash in between only makes the next run copy more than it must.
    with transaction(con):
        con.execute("DELETE FROM raw.published_state")
        con.execute("INSERT INTO raw.published_state SELECT table_name, built_at FROM raw.build_state")
    return counts
