"""The built wheel works outside the repository: installed into a fresh venv, `crm-roi demo` runs.

The SQL models and the demo data are package data; werkzeug (the fake CRM servers) is
only in the `demo` extra, and `demo --live` says so when it is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import run_ok, uv

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_runs_the_demo(tmp_path: Path):
    dist = tmp_path / "dist"
    run_ok(uv(), "build", "--wheel", "--out-dir", str(dist), str(REPO), cwd=tmp_path)
    (wheel,) = dist.glob("crm_roi-*.whl")
    # The same versions as the lock, without the dev and demo extras.
    constraints = tmp_path / "constraints.txt"
    run_ok(uv(), "export", "--frozen", "--no-hashes", "--no-emit-project", "--format", "requirements.txt",
        "-o", str(constraints), "--quiet", cwd=REPO)
    venv = tmp_path / "venv"
    run_ok(uv(), "venv", "--quiet", "--python", sys.executable, str(venv), cwd=tmp_path)
    run_ok(uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "-c", str(constraints),
        str(wheel), cwd=tmp_path)

    elsewhere = tmp_path / "somewhere_else"
    elsewhere.mkdir()
    done = run_ok(str(venv / "bin" / "crm-roi"), "demo", "--db", "demo.duckdb", cwd=elsewhere)
    assert "ROI" in done.stdout and "Traceback" not in done.stderr
    with duckdb.connect(str(elsewhere / "demo.published.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM roi.summary WHERE roi IS NOT NULL").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM staging.deals").fetchone()[0] > 5000

    live = subprocess.run([str(venv / "bin" / "crm-roi"), "demo", "--live"], cwd=elsewhere,
                          capture_output=True, text=True, timeout=300)
    assert live.returncode == 1
    assert live.stderr.strip() == ("error: crm-roi demo --live serves a fake HubSpot, which needs the demo "
                                   "extra: pip install 'crm-roi[demo]'")
    # Nothing of the repository was needed: the package's own SQL and demo data were read.
    installed = run_ok(str(venv / "bin" / "python"), "-c",
                    "from pipelines.sql_files import bundled; print(bundled('sql', 'sql'))", cwd=elsewhere)
    assert str(venv) in installed.stdout
