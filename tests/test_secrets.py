"""A full run against a live (fake) CRM never lets the token out: not in stdout or stderr,
not in Dagster's event log, not in the DuckDB files, not when the token is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from connectors.fakes.pipedrive import FakePipedrive, PipedriveStore

REPO = Path(__file__).resolve().parent.parent
TOKEN = "pd-SECRET-4f9a1c7e2b8d6053"


def _every_byte_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_the_token_appears_nowhere_after_a_good_and_a_refused_run(tmp_path: Path):
    store = PipedriveStore.from_canonical(REPO / "data" / "sample", deal_step=60)
    (tmp_path / "files").mkdir()
    shutil.copy(REPO / "data" / "sample" / "fx_rates.csv", tmp_path / "files")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home)
    env = {**os.environ, "PD_TOKEN": TOKEN, "DAGSTER_HOME": str(home)}
    crm_roi = str(Path(sys.executable).parent / "crm-roi")
    with FakePipedrive(store, TOKEN, requests_per_2s=480).running() as fake:
        config = {
            "as_of": "2026-10-31", "go_live": "2025-01-01",
            "sources": [
                {"kind": "pipedrive", "token": "env:PD_TOKEN", "base_url": fake.base_url,
                 "requests_per_2s": 480},
                {"kind": "files", "path": "files"},
            ],
            "finance": {"path": str(REPO / "data" / "sample" / "finance_gl.csv"),
                        "accounts": {"6100": "crm_software", "6200": "sales_marketing"}},
            "data_roots": [".", str(REPO / "data" / "sample")],
        }
        (tmp_path / "crm_roi.yaml").write_text(yaml.safe_dump(config))
        good = subprocess.run([crm_roi, "run"], cwd=tmp_path, env=env, capture_output=True, timeout=300)
        assert good.returncode == 0, good.stderr.decode()[-2000:]
        # The token is revoked: the sync stops with a clear, redacted error.
        refused = subprocess.run([crm_roi, "run"], cwd=tmp_path, env={**env, "PD_TOKEN": TOKEN + "-old"},
                                 capture_output=True, timeout=300)
    # The run still builds every table from what it has, and says which source stopped and why.
    assert refused.returncode == 1
    assert b"error: sync stopped early, raw/pipedrive_1_deals: AuthenticationFailed" in refused.stderr
    everything = good.stdout + good.stderr + refused.stdout + refused.stderr + _every_byte_under(tmp_path)
    assert (tmp_path / "crm_roi.duckdb").exists() and any(home.rglob("*.db"))
    assert TOKEN.encode() not in everything
    assert TOKEN[3:15].encode() not in everything  # not even a fragment
