"""Publish the analyst copy: the tables analysts read, swapped in atomically.

DuckDB admits one writing process, and an open reader stops a writer from
opening the file. So analysts never open the working file: each run copies the
staging, quarantine, KPI and ROI tables into a new file and renames it over
the published one. A rename is atomic, and an analyst whose connection is open
keeps reading the old file until they reconnect: they see the old state or the
new state, never a mix, and they never block the nightly run.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

PUBLISHED_SCHEMAS = ("staging", "quarantine", "kpi", "roi")


def publish(con: duckdb.DuckDBPyConnection, target: Path) -> dict[str, int]:
    """Copy the published schemas from `con`'s database into `target`, atomically; return row counts."""
    staging_file = target.with_name(f".{target.name}.tmp")
    staging_file.unlink(missing_ok=True)
    con.execute("ATTACH $path AS publish_target", {"path": str(staging_file)})
    counts = {}
    try:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_schema IN (SELECT unnest($schemas)) "
            "AND table_type = 'BASE TABLE' ORDER BY 1, 2",
            {"schemas": list(PUBLISHED_SCHEMAS)},
        ).fetchall()
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"CREATE SCHEMA publish_target.{schema}")
        for schema, table in tables:
            # Names come from the catalogue, quoted; nothing from config or data.
            con.execute(
                f'CREATE TABLE publish_target."{schema}"."{table}" AS SELECT * FROM "{schema}"."{table}"'  # noqa: S608
            )
            counts[f"{schema}.{table}"] = con.execute(
                f'SELECT count(*) FROM publish_target."{schema}"."{table}"'  # noqa: S608
            ).fetchone()[0]
    finally:
        con.execute("DETACH publish_target")
    os.chmod(staging_file, 0o600)
    os.replace(staging_file, target)
    return counts
