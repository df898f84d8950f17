"""Stages are accounted for: a stage missing from won_stages (a rename in the CRM, a typo) is warned
about in the run summary and a warn-level check, instead of silently turning won deals into open ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import yaml

from tests.conftest import ACCOUNTS, GL_COLUMNS, crm_roi, write_csv

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_a_renamed_won_stage_is_warned_about_and_every_stage_is_mapped(tmp_path: Path):
    exports = tmp_path / "exports"
    shutil.copytree(FIXTURES / "exports" / "custom", exports)
    write_csv(tmp_path / "gl.csv", GL_COLUMNS, [["G1", "2017-01-15", "6100", "", "", "1000", "USD"]])
    config = {
        "as_of": "2017-06-30", "go_live": "2017-01-01", "baseline_months": 3,
        "sources": [{"kind": "files", "path": "exports", "profile": "custom",
                     "files": {"deals": "opportunities*.csv"},
                     "columns": {"deal_id": "opportunity_id", "stage": "deal_stage", "created_at": "engage_date",
                                 "closed_at": "close_date", "amount": "close_value", "owner_id": "sales_agent"},
                     "won_stages": ["Won"], "lost_stages": ["Lost"], "currency": "USD"}],
        "finance": {"path": "gl.csv", "accounts": ACCOUNTS},
    }
    (tmp_path / "crm_roi.yaml").write_text(yaml.safe_dump(config))
    first = crm_roi("run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "stage_map" not in first.stderr  # Won, Lost, Engaging, Prospecting: each as its name says

    shutil.copy(FIXTURES / "stage_rename" / "opportunities_2.csv", exports)
    second = crm_roi("run", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    warnings = [line for line in second.stderr.splitlines() if line.startswith("warning: staging.stage_map")]
    assert len(warnings) == 1, second.stderr
    assert warnings[0].startswith("warning: staging.stage_map: 2 rows fail stages_accounted_for (")
    assert "Closed Won, open, 2, named like a closed stage but counted open" in warnings[0]
    assert "Negotiation, open, 1, new since the last run" in warnings[0]

    with duckdb.connect(str(tmp_path / "crm_roi.published.duckdb"), read_only=True) as con:
        stages = con.execute("SELECT stage, classification, deals, looks_closed FROM staging.stage_map "
                             "ORDER BY stage").fetchall()
    # Hand-counted: custom/opportunities.csv has 13 Won, 3 Lost, 2 Engaging and 2 Prospecting (both
    # quarantined: no engage_date, so in no stage); the second file adds 2 Closed Won and 1 Negotiation.
    assert stages == [
        ("Closed Won", "open", 2, True),
        ("Engaging", "open", 2, False),
        ("Lost", "lost", 3, True),
        ("Negotiation", "open", 1, False),
        ("Won", "won", 13, True),
    ]
