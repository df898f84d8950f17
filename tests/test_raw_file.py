"""The raw layer lives in its own DuckDB file, beside the working file, and never in the analysts' copy."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from connectors.contract import CANONICAL_STREAMS
from tests.conftest import crm_roi


def demo(db: Path) -> None:
    done = crm_roi("demo", "--db", str(db), cwd=db.parent)
    assert done.returncode == 0, done.stderr[-3000:]


def schemas(db: Path) -> set[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {s for (s,) in con.execute("SELECT schema_name FROM duckdb_schemas() WHERE NOT internal").fetchall()}


def table_rows(db: Path, schema: str) -> dict[str, list[tuple]]:
    """Every row of every table of `schema`, sorted, but for when a row was quarantined: equal dicts, equal tables.

    Floats are rounded to 9 significant digits: a mean over rows in another order differs in the last bits.
    """
    with duckdb.connect(str(db), read_only=True) as con:
        names = [t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? ORDER BY 1", [schema]).fetchall()]
        return {t: sorted((tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in row) for row in
                           con.execute(f"SELECT COLUMNS(lambda c: c <> 'rejected_at') FROM \"{schema}\".\"{t}\"")
                           .fetchall()), key=repr)
                for t in names}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo run of this release: the working file, with crm_roi_demo.raw.duckdb beside it."""
    db = tmp_path_factory.mktemp("fresh") / "demo.duckdb"
    demo(db)
    return db


def test_raw_rows_are_in_the_raw_file_and_in_no_other(fresh: Path):
    raw_file = fresh.with_suffix(".raw.duckdb")
    published = fresh.with_suffix(".published.duckdb")
    assert "raw" not in schemas(fresh)
    assert {"staging", "quarantine", "kpi", "roi", "bookkeeping"} <= schemas(fresh)
    assert schemas(published) == {"staging", "quarantine", "kpi", "roi", "history"}
    raw = table_rows(raw_file, "main")
    assert set(CANONICAL_STREAMS) | {"loaded_files", "sync_state", "schema_version"} == set(raw)
    with duckdb.connect(str(raw_file), read_only=True) as con:
        landed, recorded = con.execute(
            "SELECT (SELECT count(*) FROM deals), (SELECT sum(row_count) FROM loaded_files WHERE stream = 'deals')"
        ).fetchone()
    assert landed == recorded > 5000


def test_a_raw_file_that_holds_text_stops_the_run_with_one_line(tmp_path: Path):
    """A raw file made before landing typed its values (every column text, no `_text`) is named, not crashed on."""
    db = tmp_path / "demo.duckdb"
    with duckdb.connect(str(db.with_suffix(".raw.duckdb"))) as con:
        columns = ", ".join(f"{c} VARCHAR" for c in CANONICAL_STREAMS["deals"].columns)
        con.execute(f"CREATE TABLE deals ({columns}, _source VARCHAR NOT NULL, _file VARCHAR, _row_number BIGINT, "
                    "_batch_id BIGINT NOT NULL, _loaded_at TIMESTAMP NOT NULL)")
        con.execute("INSERT INTO deals (deal_id, amount, _source, _batch_id, _loaded_at) "
                    "VALUES ('D1', '1,000.50', 'files_1', 1, now()::TIMESTAMP)")
    done = crm_roi("demo", "--db", str(db), cwd=tmp_path)
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {db.with_suffix('.raw.duckdb')}: raw.deals was landed as text by an older build "
                           "of crm-roi; move the file aside and run again (every export file is landed again, API "
                           "sources sync in full)")
