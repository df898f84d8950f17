"""A run that quarantines too much of what it landed fails: one line, the analysts keep the last good copy.

The export in tests/fixtures/garbage has 43 of its 50 rows (86 %) broken. Before the check
existed such a run exited 0 with one warning line and published tables missing most deals.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import yaml

from tests.conftest import crm_roi

REPO = Path(__file__).resolve().parent.parent
GARBAGE = REPO / "tests" / "fixtures" / "garbage" / "deals_2026-10-31.csv"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_86_percent_garbage_export_fails_the_run_and_keeps_the_last_good_copy(tmp_path: Path):
    shutil.copytree(REPO / "data" / "sample", tmp_path / "exports")
    config = tmp_path / "exports" / "crm_roi.yaml"
    first = crm_roi("run", "--config", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    published = tmp_path / "exports" / "crm_roi.published.duckdb"
    good = digest(published)

    shutil.copy(GARBAGE, tmp_path / "exports")
    failed = crm_roi("run", "--config", str(config), cwd=tmp_path)
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr[-3000:]
    # 43 of 50: 36 unparseable created_at, 4 missing deal_id, 3 won while open (hand-counted in the file).
    assert lines[0].startswith("error: staging.deals: 86.0% of the 50 rows source files_1 landed were quarantined "
                               "(max_rejected_share 0.2); top reasons: unparseable created_at (36), "
                               "missing deal_id (4), is_won while not is_closed (3)")
    assert "full log: " in lines[0]
    assert digest(published) == good  # the analysts' copy was not replaced

    # The landed rows stay in raw: a corrected config re-runs without loading the file again.
    with duckdb.connect(str(tmp_path / "exports" / "crm_roi.raw.duckdb"), read_only=True) as con:
        loaded = con.execute("SELECT count(*), sum(row_count) FROM loaded_files "
                             "WHERE file_name = 'deals_2026-10-31.csv'").fetchone()
    assert loaded == (1, 50)
    # Still failing on the next run, not silently accepted once the rows are old.
    again = crm_roi("run", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 1 and "86.0% of the 50 rows" in again.stderr

    settings = yaml.safe_load(config.read_text())
    settings["sources"][0]["max_rejected_share"] = 0.9
    config.write_text(yaml.safe_dump(settings))
    accepted = crm_roi("run", "--config", str(config), cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    assert digest(published) != good
    with duckdb.connect(str(published), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM staging.deals WHERE deal_id LIKE 'G_'").fetchone()[0] == 7
    with duckdb.connect(str(tmp_path / "exports" / "crm_roi.raw.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM loaded_files WHERE file_name = 'deals_2026-10-31.csv'"
                           ).fetchone()[0] == 1
