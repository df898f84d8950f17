"""`crm-roi diff`: what the last run changed in periods that were already complete.

The analysts' copy keeps every published run's complete periods (history.kpi_periodic,
see publish.py); comparing the last two shows a restated month before anyone asks why
last quarter's figure moved.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.query import NoTables
from pipelines.sql_files import sql_text


def changes(published: Path) -> tuple[list[str], list[tuple]]:
    """(columns, rows) of every cell of a complete period that differs between the last two runs."""
    if not published.is_file():
        raise NoTables(f"no DuckDB file at {published}: run `crm-roi run` (or `demo`) first")
    with duckdb.connect(str(published), read_only=True) as con:
        runs = con.execute("SELECT count(DISTINCT run_id) FROM history.kpi_periodic").fetchone()[0]
        if runs < 2:
            raise NoTables(f"{published} holds {runs} published run(s): a diff needs two")
        cursor = con.execute(sql_text("history/diff"))
        return [d[0] for d in cursor.description], cursor.fetchall()
