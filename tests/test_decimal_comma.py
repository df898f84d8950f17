"""Amounts written with a decimal comma ("1.200,50"): refused loudly by default, read with decimal_separator.

Every expected number below is read off the export by hand. The first run uses the default
decimal point, so none of the five amounts parses: the run must fail with one line
that says what to set. The config is then corrected and re-run without --full-reload: the
file must be read again under the new setting (its reading settings changed), not kept as
it was first landed.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.sql_files import sql_text
from pipelines.starter_config import write_starter_config
from tests.conftest import ACCOUNTS, GL_COLUMNS, crm_roi, gl, write_csv

EXPORT = """Opp Ref;Account;Value;Opened;Closed On;Stage;Rep
D-1;Zeta;1.200,50;03/02/2024;15/03/2024;Won;ann
D-2;Omega;800,00;13/02/2024;;Negotiation;bob
D-3;Kappa;1 234,5 €;14/02/2024;20/04/2024;Lost;ann
D-4;Kappa;12.345.678,9;01/03/2024;02/04/2024;Won;bob
D-5;Beta;12,34,56;05/03/2024;;Negotiation;ann
"""
SOURCE = {"kind": "files", "name": "crm", "path": "exports", "profile": "custom", "currency": "EUR",
          "files": {"deals": "opportunities.csv"}, "won_stages": ["Won"], "lost_stages": ["Lost"],
          "date_format": "%d/%m/%Y",
          "columns": {"deal_id": "Opp Ref", "account_id": "Account", "amount": "Value", "created_at": "Opened",
                      "closed_at": "Closed On", "stage": "Stage", "owner_id": "Rep"}}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "opportunities.csv").write_text(EXPORT, encoding="utf-8")
    write_csv(tmp_path / "finance_gl.csv", GL_COLUMNS, [gl("G1", "2024-01-10", "6100", "500", "EUR")])
    return tmp_path


def write(folder: Path, source: dict) -> Path:
    config = {"as_of": "2024-12-31", "go_live": "2024-03-01", "base_currency": "EUR", "sources": [source],
              "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS}}
    path = folder / "crm_roi.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_a_decimal_comma_export_fails_with_the_setting_to_use_and_reads_once_it_is_set(folder: Path):
    config = write(folder, SOURCE)
    failed = crm_roi("run", "--config", str(config), cwd=folder)
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr[-3000:]
    assert lines[0].startswith("error: staging.deals: 100.0% of the 5 rows source crm landed were quarantined")
    assert "top reasons: unparseable amount (5)" in lines[0]
    assert "use a decimal comma: set decimal_separator: ',' for crm" in lines[0]

    write(folder, {**SOURCE, "decimal_separator": ","})
    fixed = crm_roi("run", "--config", str(config), cwd=folder)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "crm: 1 loaded, 0 unchanged" in fixed.stdout  # read again: its reading settings changed
    with duckdb.connect(str(folder / "crm_roi.published.duckdb"), read_only=True) as con:
        amounts = dict(con.execute("SELECT deal_id, amount FROM staging.deals").fetchall())
        rejected = con.execute("SELECT key, reason, payload->>'amount' FROM quarantine.rejected_rows").fetchall()
    assert amounts == {"D-1": 1200.5, "D-2": 800.0, "D-3": 1234.5, "D-4": 12345678.9}
    assert rejected == [("D-5", "unparseable amount", "12,34,56")]  # kept as it came

    again = crm_roi("run", "--config", str(config), cwd=folder)
    assert again.returncode == 0 and "crm: 0 loaded, 1 unchanged" in again.stdout


@pytest.mark.parametrize(("text", "expected"), [
    ("1.200,50", 1200.5), ("800,00", 800.0), ("-12,5", -12.5), ("(1.000,00)", -1000.0), ("1 234,50 €", 1234.5),
    ("€ 1.234", 1234.0), ("1\u00a0234,5", 1234.5), ("12.345.678,9", 12345678.9), ("950", 950.0),
    ("1,200.50", None), ("1.2345,00", None), ("12,34,56", None), ("oops", None), ("", None),
])
def test_decimal_comma_values_read_as_written_in_that_convention(text: str, expected: float | None):
    con = duckdb.connect()
    con.execute(sql_text("macros"))
    assert con.execute("SELECT parse_number(decimal_comma_to_point(?))", [text]).fetchone()[0] == expected


def test_init_guesses_the_decimal_comma_from_the_values(folder: Path):
    (folder / "exports" / "finance_gl.csv").write_bytes((folder / "finance_gl.csv").read_bytes())
    path, _ = write_starter_config(folder / "exports", folder / "guessed.yaml")
    text = path.read_text(encoding="utf-8")
    assert 'decimal_separator: ","' in text
    assert yaml.safe_load(text)["sources"][0]["decimal_separator"] == ","
    # The GL's amounts are written with a point: its section gets no such line.
    assert yaml.safe_load(text)["finance"].get("decimal_separator") is None


def test_init_leaves_a_decimal_point_export_alone(folder: Path):
    (folder / "exports" / "opportunities.csv").write_text(
        EXPORT.replace("1.200,50", "1,200.50").replace("800,00", "800.00").replace("1 234,5 €", "1234.5")
        .replace("12.345.678,9", "12,345,678.9"), encoding="utf-8")
    path, _ = write_starter_config(folder / "exports", folder / "guessed.yaml")
    assert "decimal_separator" not in path.read_text(encoding="utf-8")


def test_new_reading_settings_with_a_loaded_file_gone_stop_instead_of_dropping_its_rows(folder: Path):
    source = {**SOURCE, "files": {"deals": "opportunities*.csv"}, "decimal_separator": ","}
    config = write(folder, source)
    assert crm_roi("run", "--config", str(config), cwd=folder).returncode == 0
    exports = folder / "exports"
    (exports / "opportunities.csv").rename(folder / "rotated_out.csv")  # the export folder keeps deltas only
    (exports / "opportunities_delta.csv").write_text(EXPORT.replace("D-", "N-"), encoding="utf-8")

    write(folder, {**source, "timezone": "Europe/Paris"})  # a reading setting changed
    failed = crm_roi("run", "--config", str(config), cwd=folder)
    assert failed.returncode == 1
    assert failed.stderr.startswith(
        "error: crm: its reading settings changed, so its deals files are read again, but some are no longer "
        "in the folder (opportunities.csv): put them back, or run with --full-reload to keep only the files there now")
    with duckdb.connect(str(folder / "crm_roi.raw.duckdb"), read_only=True) as con:
        kept = con.execute("SELECT count(*) FROM deals WHERE deal_id LIKE 'D-%'").fetchone()[0]
    assert kept == 5  # nothing already stored was lost
