"""Headers matched ignoring case and spacing, a hint for a missing one, and composite keys.

The fixtures in tests/fixtures/columns/ are hand-made exports (see the README there);
every expected value is read off them by hand, and composite keys are recomputed here
with hashlib, independently of the SQL that makes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

from connectors.files.reader import ExportFileError
from pipelines.config import ConfigError, load_settings
from tests.conftest import ACCOUNTS, run_pipeline, write_config

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "columns"
GL = "entry_id,posted_on,account,description,vendor,amount,currency\nG1,2025-01-10,6100,CRM,Acme,500,USD\n"
SPACED = {"profile": "custom", "files": {"deals": "opportunities.csv"}, "won_stages": ["Won"],
          "lost_stages": ["Lost"], "currency": "USD",
          "columns": {"stage": "deal stage", "amount": "deal_value", "created_at": "CREATE-DATE",
                      "closed_at": "close_date"}}
NO_ID = {"profile": "custom", "won_stages": ["Won"], "lost_stages": ["Lost"], "currency": "USD",
         "columns": {"deal_id": ["Deal Name", "Created"], "deal_name": "Deal Name", "created_at": "Created",
                     "closed_at": "Closed", "stage": "Stage", "amount": "Amount", "updated_at": "Modified"}}


def config(source: dict) -> dict:
    return {"as_of": "2025-12-31", "go_live": "2025-01-01",
            "sources": [{"kind": "files", "name": "crm", "path": "exports", **source}],
            "finance": {"path": "gl.csv", "accounts": ACCOUNTS}}


@pytest.fixture
def run(tmp_path: Path, run_config):
    """Copy a fixture folder (if named) to exports/ and run the pipeline with `source`."""
    (tmp_path / "gl.csv").write_text(GL, encoding="utf-8")

    def _run(fixture: str, source: dict) -> duckdb.DuckDBPyConnection:
        if fixture:
            shutil.copytree(FIXTURES / fixture, tmp_path / "exports")
        return run_config(config(source))

    return _run


def deals(con: duckdb.DuckDBPyConnection, columns: str = "deal_id, stage, is_won, amount, created_at, closed_at"
          ) -> list[tuple]:
    return con.execute(f"SELECT {columns} FROM staging.deals ORDER BY created_at, deal_id").fetchall()


def test_profile_headers_match_whatever_their_case_and_spacing(run):
    # 'record_id', 'deal_stage', 'close_date' are HubSpot's 'Record ID', 'Deal Stage', 'Close Date'.
    con = run("hubspot_lowercase", {"profile": "hubspot_export"})
    assert deals(con, "deal_id, deal_name, owner_id, is_closed, is_won, amount, closed_at") == [
        ("4001", "Acme - Pilot", "Ann Lee", True, True, 1000.0, dt.datetime(2025, 3, 1, 10, 0)),
        ("4002", "Globex - Renewal", "Bo Chen", True, False, 500.0, dt.datetime(2025, 3, 5, 12, 0)),
        ("4003", "Initech - New", "Bo Chen", False, False, 750.0, None),
    ]


def test_a_column_map_matches_headers_whatever_their_case_and_spacing(run):
    # The map says 'deal stage', 'deal_value', 'CREATE-DATE', 'close_date'; deal_id is found by its
    # canonical name in 'Deal ID'.
    con = run("custom_spacing", SPACED)
    assert deals(con) == [
        ("C-1", "Won", True, 1000.0, dt.datetime(2025, 2, 1), dt.datetime(2025, 3, 1)),
        ("C-2", "Lost", False, 400.0, dt.datetime(2025, 2, 5), dt.datetime(2025, 2, 20)),
        ("C-3", "Discovery", False, 900.0, dt.datetime(2025, 3, 3), None),
    ]


def test_a_missing_column_names_the_closest_header(run):
    source = {**SPACED, "columns": {**SPACED["columns"], "closed_at": "closing_date"}}
    with pytest.raises(ExportFileError) as missing:
        run("custom_spacing", source)
    assert str(missing.value) == (
        "opportunities.csv: column 'closing_date' (deals.closed_at) is missing; the file has: "
        "Deal ID, DEAL STAGE, Deal-Value, Create Date, Close Date; did you mean 'Close Date'?"
    )


def test_a_mapped_column_is_read_from_its_header_only(run, tmp_path):
    # amount is mapped to 'Net Value'; the file's 'Amount' (gross) must not fill in where it is empty.
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "deals.csv").write_text(
        "deal_id,status,Net Value,Amount,created_at,closed_at\n"
        "N-1,Won,900,1000,2025-02-01,2025-03-01\nN-2,Won,,500,2025-02-02,2025-03-02\n", encoding="utf-8")
    source = {"profile": "custom", "won_stages": ["Won"], "currency": "USD",
              "columns": {"stage": "status", "amount": "Net Value"}}
    con = run("", source)
    assert deals(con, "deal_id, amount") == [("N-1", 900.0), ("N-2", None)]


def test_two_headers_that_match_one_name_are_an_error(tmp_path):
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "deals.csv").write_text(
        "record id,RECORD_ID,Deal Stage,Amount,Close Date,Create Date\n1,1,Closed Won,5,2025-03-01,2025-02-01\n",
        encoding="utf-8")
    (tmp_path / "gl.csv").write_text(GL, encoding="utf-8")
    settings = load_settings(write_config(tmp_path, config({"profile": "hubspot_export"})))
    with pytest.raises(ExportFileError) as twice:
        run_pipeline(settings).close()
    # Neither is exactly HubSpot's 'Record ID', and one cannot be preferred over the other.
    assert str(twice.value) == (
        "deals.csv: columns 'RECORD_ID' and 'record id' both match 'Record ID'; rename or drop one")


def key(*values: str) -> str:
    """The documented composite key: SHA-256 of the values joined by U+001F, first 32 hex digits."""
    return hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:32]


def test_a_composite_key_names_a_deal_by_the_columns_that_identify_it(run):
    con = run("no_id", NO_ID)
    # 'Acme pilot' created 2025-02-01 is listed twice (open, then won on 03-10): one deal, the
    # later version. The one created 2025-04-01 is another deal.
    assert deals(con) == [
        (key("Acme pilot", "2025-02-01"), "Won", True, 1200.0, dt.datetime(2025, 2, 1), dt.datetime(2025, 3, 10)),
        (key("Globex renewal", "2025-02-03"), "Lost", False, 500.0, dt.datetime(2025, 2, 3),
         dt.datetime(2025, 3, 1)),
        (key("Acme pilot", "2025-04-01"), "Open", False, 800.0, dt.datetime(2025, 4, 1), None),
    ]
    # A row with every key value empty has no key: quarantined, not merged with anything.
    assert con.execute("SELECT key, reason, row_number FROM quarantine.rejected_rows").fetchall() == [
        (None, "missing deal_id; missing created_at", 5)]


def test_a_composite_key_part_missing_from_the_file_is_named(run):
    source = {**NO_ID, "columns": {**NO_ID["columns"], "deal_id": ["Deal Name", "Created On"]}}
    with pytest.raises(ExportFileError) as missing:
        run("no_id", source)
    assert str(missing.value).startswith(
        "deals.csv: column 'Created On' (part of deals.deal_id's key) is missing; the file has: ")


@pytest.mark.parametrize(("columns", "message"), [
    ({"closed_on": "Closed"}, "sources.0: columns: 'closed_on' is not a canonical column (did you mean closed_at?)"),
    ({"amount": ["Net", "Tax"]}, "sources.0: columns.amount: a list of headers (a composite key) is only for a "
                                 "key column (deal_id, customer_id, entry_id, response_id)"),
])
def test_a_column_map_naming_no_canonical_column_is_a_config_error(tmp_path, columns, message):
    (tmp_path / "exports").mkdir()
    (tmp_path / "gl.csv").write_text(GL, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(write_config(tmp_path, config({"profile": "custom", "won_stages": ["Won"], "columns": columns})))
    assert str(error.value).endswith(message)


def test_a_custom_export_without_flags_or_won_stages_says_to_list_them(run):
    source = {key: value for key, value in SPACED.items() if key not in ("won_stages", "lost_stages")}
    with pytest.raises(ExportFileError) as missing:
        run("custom_spacing", source)
    assert str(missing.value) == (
        "opportunities.csv: no is_closed and is_won columns, so whether a deal is won comes from 'DEAL STAGE': "
        "list the values that mean won in won_stages (and lost in lost_stages)")
