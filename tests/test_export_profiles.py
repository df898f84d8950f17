"""CRM export files as each CRM's UI writes them, through load -> staging.

The fixtures in tests/fixtures/exports/<profile>/ are real-shaped exports (see
the README there). Every expected value below is worked out by hand from those
files: stage or status labels -> is_closed / is_won, formatted amounts -> numbers,
local dates -> UTC timestamps, and the rows the row rules must quarantine.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from connectors.files.reader import ExportFileError
from pipelines.config import load_settings
from pipelines.warehouse import open_with_raw
from tests.conftest import ACCOUNTS, run_pipeline

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "exports"
HUBSPOT_HEADER = (
    "Record ID,Deal Name,Deal Stage,Amount,Close Date,Create Date,Deal owner,Pipeline,Currency"
)
FX_RATES = (
    "date,currency,rate_to_base\n"
    "2015-01-01,GBP,1.30\n"
    "2020-06-01,GBP,1.25\n"
    "2015-01-01,EUR,1.10\n"
)
FINANCE_GL = (
    "entry_id,posted_on,account,description,vendor,amount,currency\n"
    "G1,2025-01-10,6100,CRM licence,Acme CRM,500,USD\n"
)
CUSTOM_SOURCE = {
    "files": {"deals": "opportunities.csv"},
    "columns": {
        "deal_id": "opportunity_id", "stage": "deal_stage", "created_at": "engage_date",
        "closed_at": "close_date", "amount": "close_value", "owner_id": "sales_agent",
        "account_id": "account",
    },
    "won_stages": ["Won"],
    "lost_stages": ["Lost"],
    "currency": "USD",
}
DEAL_FIELDS = (
    "deal_id, stage, is_closed, is_won, is_deleted, amount, currency, created_at, closed_at"
)


def ts(*parts: int) -> dt.datetime:
    return dt.datetime(*parts)


def source(profile: str, folder: str = "exports", **extra: object) -> dict:
    """A files source named `crm` reading `folder` (relative to the config file)."""
    return {"kind": "files", "name": "crm", "path": folder, "profile": profile, **extra}


def copy_fixture(tmp_path: Path, profile: str, folder: str = "exports") -> Path:
    target = tmp_path / folder
    shutil.copytree(FIXTURES / profile, target)
    return target


@pytest.fixture
def run(tmp_path: Path):
    """Write crm_roi.yaml (the given source, an fx_rates source, a tiny GL) and run the models."""
    opened: list[duckdb.DuckDBPyConnection] = []
    (tmp_path / "rates").mkdir()
    (tmp_path / "rates" / "fx_rates.csv").write_text(FX_RATES, encoding="utf-8")
    (tmp_path / "finance_gl.csv").write_text(FINANCE_GL, encoding="utf-8")

    def _run(crm_source: dict, **settings: object) -> duckdb.DuckDBPyConnection:
        config = {
            "as_of": "2025-06-30", "go_live": "2025-01-01",
            "sources": [crm_source, {"kind": "files", "name": "rates", "path": "rates"}],
            "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS},
            **settings,
        }
        path = tmp_path / "crm_roi.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        con = run_pipeline(load_settings(path))
        opened.append(con)
        return con

    yield _run
    for con in opened:
        con.close()


def staged(con: duckdb.DuckDBPyConnection, fields: str = DEAL_FIELDS) -> list[tuple]:
    # `fields` is a literal column list from this module, never data.
    sql = f"SELECT {fields} FROM staging.deals ORDER BY deal_id"
    return con.execute(sql).fetchall()


def snapshot(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Every staging.deals column except the batch id, for comparing two loads."""
    return con.execute("SELECT * EXCLUDE (batch_id) FROM staging.deals ORDER BY deal_id").fetchall()


def quarantined(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "SELECT key, reason, file_name, row_number FROM quarantine.rejected_rows "
        "WHERE table_name = 'deals' ORDER BY key"
    ).fetchall()


def raw_count(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(*) FROM raw.deals WHERE _source = 'crm'").fetchone()[0]


def base_amounts(con: duckdb.DuckDBPyConnection) -> dict[str, float | None]:
    return dict(con.execute("SELECT deal_id, amount_base FROM staging.deals").fetchall())


# --- HubSpot: label headers, '£1,000' amounts, 'YYYY-MM-DD HH:MM', UTF-8 BOM, CRLF ---------

HUBSPOT_DEALS = [
    # deal_id, stage, is_closed, is_won, is_deleted, amount, currency, created_at, closed_at
    ("1260142865", "Closed Won", True, True, False, 1000.0, "GBP",
     ts(2019, 12, 8, 18, 50), ts(2020, 1, 15, 16, 30)),
    ("1348398344", "Closed Won", True, True, False, 1250.5, "USD",
     ts(2019, 12, 28, 22, 22), ts(2020, 2, 3, 9, 15)),
    ("1565004294", "Closed Lost", True, False, False, 4800.0, "USD",
     ts(2020, 2, 14, 8, 29), ts(2020, 3, 20, 11, 0)),
    ("1806318738", "Closed Won", True, True, False, 12000.0, "USD",
     ts(2020, 3, 30, 21, 54), ts(2020, 4, 30, 17, 45)),
    # Open: its Close Date is only the expected one, and the empty amount is null.
    ("1915568724", "Appointment Scheduled", False, False, False, None, "USD",
     ts(2020, 4, 23, 2, 14), None),
    ("1957317823", "Closed Won", True, True, False, 25000.0, "GBP",
     ts(2020, 5, 2, 1, 4), ts(2020, 6, 12, 10, 0)),
    ("2069431145", "Closed Lost", True, False, False, None, "USD",
     ts(2020, 5, 25, 19, 16), ts(2020, 6, 1, 13, 20)),
    ("2266336287", "Closed Won", True, True, False, 900.0, "USD",
     ts(2020, 6, 4, 11, 17), ts(2020, 6, 4, 15, 0)),
    ("2365566196", "Appointment Scheduled", False, False, False, 3300.0, "USD",
     ts(2020, 7, 2, 15, 31), None),
    ("2392872971", "Closed Won", True, True, False, 18400.0, "USD",
     ts(2020, 7, 9, 20, 15), ts(2020, 9, 15, 12, 0)),
    ("2784249448", "Closed Lost", True, False, False, 2000.0, "USD",
     ts(2020, 8, 11, 22, 34), ts(2020, 10, 2, 8, 30)),
    ("2812830555", "Appointment Scheduled", False, False, False, 600.0, "GBP",
     ts(2020, 8, 15, 14, 28), None),
    ("2990334288", "Closed Won", True, True, False, 1_000_000.0, "USD",
     ts(2020, 9, 25, 3, 30), ts(2020, 11, 30, 18, 5)),
]


def test_hubspot_export_deals(tmp_path, run):
    copy_fixture(tmp_path, "hubspot_export")
    con = run(source("hubspot_export"))

    assert staged(con) == HUBSPOT_DEALS
    assert raw_count(con) == 15
    # '250k' does not parse; Cyberdyne closed (07-01) before it was created (07-06).
    assert quarantined(con) == [
        ("2325157681", "unparseable amount", "deals.csv", 9),
        ("2382202760", "closed_at before created_at", "deals.csv", 11),
    ]
    # GBP: 1.30 until 2020-06-01, then 1.25; an open deal is priced on its created date.
    amounts = base_amounts(con)
    assert amounts["1260142865"] == pytest.approx(1000 * 1.30)
    assert amounts["1957317823"] == pytest.approx(25000 * 1.25)
    assert amounts["2812830555"] == pytest.approx(600 * 1.25)
    assert amounts["2990334288"] == pytest.approx(1_000_000)
    assert amounts["1915568724"] is None
    (globex,) = con.execute(
        "SELECT deal_name, owner_id, pipeline, source, updated_at FROM staging.deals "
        "WHERE deal_id = '1348398344'"
    ).fetchall()
    # No Last Modified Date column: updated_at is the later of created_at and closed_at.
    assert globex == ("Globex, Inc. - Expansion", "Maria Lopez", "Sales Pipeline", "crm",
                      ts(2020, 2, 3, 9, 15))


# --- Salesforce: report labels, M/D/YYYY, every field quoted, report footer -----------------

SALESFORCE_DEALS = [
    ("006q000000GoP76AAF", "Closed Lost", True, False, False, 1.0, "USD",
     ts(2018, 10, 31), ts(2018, 10, 31)),
    ("006q000000HK8jdAAD", "Closed Lost", True, False, False, 200000.0, "USD",
     ts(2018, 11, 14), ts(2018, 11, 21)),
    ("006q000000Hbmd1AAB", "Closed Won", True, True, False, None, "USD",
     ts(2018, 12, 10), ts(2018, 12, 18)),
    ("006q000000HcZXXAA3", "Closed Lost", True, False, False, None, "USD",
     ts(2018, 12, 13), ts(2018, 12, 13)),
    ("006q000000HcZXcAAN", "Closed Lost", True, False, False, None, "USD",
     ts(2018, 12, 13), ts(2018, 12, 13)),
    ("006q000000HcZXrAAN", "Closed Won", True, True, False, None, "USD",
     ts(2018, 12, 13), ts(2018, 12, 13)),
    # Open opportunity: the export's Close Date 12/19/2018 is an expectation, not a close.
    ("006q000000HdOhuAAF", "Prospecting", False, False, False, 210000.0, "USD",
     ts(2018, 12, 18), None),
    ("006q000000HdPzpAAF", "Closed Won", True, True, False, None, "USD",
     ts(2018, 12, 18), ts(2018, 12, 18)),
    ("006q000000HddohAAB", "Closed Won", True, True, False, 24_120_000.0, "USD",
     ts(2018, 12, 19), ts(2018, 12, 19)),
]


def test_salesforce_export_deals(tmp_path, run):
    copy_fixture(tmp_path, "salesforce_export")
    con = run(source("salesforce_export"))

    assert staged(con) == SALESFORCE_DEALS
    # Ten opportunities landed; the footer lines (Grand Totals, Confidential, Copyright)
    # and the blank lines between them are not rows.
    assert raw_count(con) == 10
    assert con.execute(
        "SELECT count(*) FROM raw.deals WHERE deal_id IS NULL OR owner_id LIKE 'Grand Totals%' "
        "OR owner_id LIKE 'Copyright%' OR owner_id LIKE 'Confidential%'"
    ).fetchone()[0] == 0
    # 'Chewbaca' in the seed data closes on 12/7/2018 but was created on 12/19/2018.
    assert quarantined(con) == [
        ("006q000000HddueAAB", "closed_at before created_at", "deals.csv", 5),
    ]
    (big,) = con.execute(
        "SELECT deal_name, account_id, owner_id, pipeline FROM staging.deals "
        "WHERE deal_id = '006q000000HddohAAB'"
    ).fetchall()
    assert big == ("$1m deal", "Seinfeld", "Brandon Zinn", "New Business")


# --- Pipedrive: 'Deal - ...' headers, ';'-delimited, status open/won/lost/deleted -------------

PIPEDRIVE_DEALS = [
    ("101", "Negotiations Started", True, True, False, 12000.0, "EUR",
     ts(2024, 1, 8, 9, 12, 44), ts(2024, 2, 20, 16, 3, 10)),
    ("102", "Proposal Made", True, False, False, 4500.0, "EUR",
     ts(2024, 1, 15, 14, 30), ts(2024, 3, 1, 10, 0)),
    ("103", "Demo Scheduled", False, False, False, 7800.0, "EUR",
     ts(2024, 2, 2, 8, 5, 19), None),
    ("104", "Qualified", False, False, True, 3000.0, "EUR",
     ts(2024, 2, 10, 11, 11, 11), None),
    ("105", "Contact Made", True, True, False, 2450.5, "USD",
     ts(2024, 3, 4, 13, 0), ts(2024, 3, 28, 17, 20)),
    ("106", "Proposal Made", True, False, False, 0.0, "EUR",
     ts(2024, 3, 12, 9, 45), ts(2024, 4, 2, 15, 0)),
    ("107", "Qualified", False, False, False, 0.0, "EUR",
     ts(2024, 4, 1, 10, 0), None),
    ("108", "Negotiations Started", True, True, False, 9990.0, "EUR",
     ts(2024, 4, 3, 7, 30), ts(2024, 5, 15, 11, 45)),
    # Lost, then deleted: deleted counts nowhere, and its lost time is not a close.
    ("109", "Contact Made", False, False, True, 1500.0, "EUR",
     ts(2024, 4, 20, 16, 0), None),
    ("111", "Demo Scheduled", False, False, False, 22000.0, "USD",
     ts(2024, 6, 10, 14, 22), None),
    ("112", "Proposal Made", True, True, False, 5600.0, "EUR",
     ts(2024, 6, 17, 8, 0), ts(2024, 7, 31, 23, 59)),
]


def test_pipedrive_export_deals(tmp_path, run):
    copy_fixture(tmp_path, "pipedrive_export")
    con = run(source("pipedrive_export"))

    assert staged(con) == PIPEDRIVE_DEALS
    assert raw_count(con) == 12
    # Deal 110 was imported on 2024-06-01 with a historical won time (2023-11-30).
    assert quarantined(con) == [("110", "closed_at before created_at", "deals.csv", 10)]
    updated = dict(con.execute("SELECT deal_id, updated_at FROM staging.deals").fetchall())
    assert updated["103"] == ts(2024, 4, 11, 12, 40)  # 'Deal - Update time'
    assert updated["108"] == ts(2024, 5, 16, 8, 0)
    amounts = base_amounts(con)
    assert amounts["101"] == pytest.approx(12000 * 1.10)
    assert amounts["105"] == pytest.approx(2450.5)
    (cafe,) = con.execute(
        "SELECT deal_name, account_id, owner_id, pipeline FROM staging.deals WHERE deal_id = '106'"
    ).fetchall()
    assert cafe == ("Café Lumière deal", "Café Lumière SARL", "Lena Vogel", "Sales")


# --- Custom profile: a Kaggle-style sales-opportunities file mapped in the config -------------

CUSTOM_DEALS = [
    ("4Q7K2M9A", "Won", True, True, False, 1054.0, "USD", ts(2016, 10, 20), ts(2017, 3, 1)),
    ("B0Y8MC5Q", "Won", True, True, False, 1015.0, "USD", ts(2016, 11, 4), ts(2017, 3, 3)),
    ("C8N4UX6G", "Won", True, True, False, 57.0, "USD", ts(2016, 10, 30), ts(2017, 3, 2)),
    ("D1Q7ZV8H", "Won", True, True, False, 481.0, "USD", ts(2016, 11, 7), ts(2017, 3, 29)),
    ("F9U5GT2X", "Lost", True, False, False, 0.0, "USD", ts(2016, 11, 6), ts(2017, 3, 12)),
    ("G2V6LP3S", "Won", True, True, False, 1026.0, "USD", ts(2016, 11, 1), ts(2017, 3, 7)),
    ("H3T9XM4W", "Lost", True, False, False, 0.0, "USD", ts(2017, 2, 23), ts(2017, 4, 10)),
    ("J6H0TC4V", "Won", True, True, False, 588.0, "USD", ts(2016, 10, 25), ts(2017, 3, 9)),
    ("K4S2NJ7R", "Lost", True, False, False, 0.0, "USD", ts(2016, 11, 4), ts(2017, 3, 14)),
    ("L8K2EB6P", "Engaging", False, False, False, None, "USD", ts(2017, 2, 20), None),
    ("M3B7QE2D", "Won", True, True, False, 49.0, "USD", ts(2016, 10, 29), ts(2017, 3, 1)),
    ("N6A3RW1L", "Won", True, True, False, 5283.0, "USD", ts(2016, 11, 5), ts(2017, 3, 7)),
    ("P9D3WS1N", "Won", True, True, False, 50.0, "USD", ts(2016, 10, 25), ts(2017, 3, 7)),
    ("R1Z5YF8K", "Won", True, True, False, 517.0, "USD", ts(2016, 10, 25), ts(2017, 3, 2)),
    ("S4G8PD3M", "Won", True, True, False, 4839.0, "USD", ts(2017, 3, 1), ts(2017, 3, 1)),
    ("T7E9HD0B", "Engaging", False, False, False, None, "USD", ts(2016, 11, 3), None),
    ("W5F1KA9T", "Won", True, True, False, 601.0, "USD", ts(2016, 11, 1), ts(2017, 3, 18)),
    ("X2L8RB5E", "Won", True, True, False, 4514.0, "USD", ts(2016, 10, 25), ts(2017, 3, 11)),
]


def test_custom_profile_maps_a_kaggle_style_opportunities_file(tmp_path, run):
    copy_fixture(tmp_path, "custom")
    con = run(source("custom", **CUSTOM_SOURCE))

    assert staged(con) == CUSTOM_DEALS
    assert raw_count(con) == 20
    # Prospecting rows have no engage_date, so no created_at: rejected, not guessed.
    assert quarantined(con) == [
        ("E2W6FS0Y", "missing created_at", "opportunities.csv", 19),
        ("V5R1CN7J", "missing created_at", "opportunities.csv", 18),
    ]
    owners = con.execute(
        "SELECT owner_id, account_id FROM staging.deals WHERE deal_id IN ('4Q7K2M9A', 'T7E9HD0B') "
        "ORDER BY deal_id"
    ).fetchall()
    assert owners == [("Harriet Okafor", "Brightmoor"), ("Carlos Mendez", None)]


# --- File format variations -------------------------------------------------------------------

def _hubspot_rows() -> list[list[str]]:
    text = (FIXTURES / "hubspot_export" / "deals.csv").read_text(encoding="utf-8-sig")
    return list(csv.reader(io.StringIO(text, newline="")))


def _csv_text(rows: list[list[str]], delimiter: str = ",", newline: str = "\n") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return buffer.getvalue()


def test_semicolon_and_comma_delimited_files_stage_identically(tmp_path, run):
    # Fields hold commas ('Globex, Inc.', '£1,000'), so the comma file quotes them.
    rows = _hubspot_rows()
    for folder, delimiter in (("comma", ","), ("semicolon", ";")):
        (tmp_path / folder).mkdir()
        text = _csv_text(rows, delimiter)
        (tmp_path / folder / "deals.csv").write_text(text, encoding="utf-8", newline="")
    comma = run(source("hubspot_export", "comma"), duckdb_path="comma.duckdb")
    semicolon = run(source("hubspot_export", "semicolon"), duckdb_path="semicolon.duckdb")

    assert snapshot(comma) == snapshot(semicolon)
    assert staged(semicolon) == HUBSPOT_DEALS


def test_bom_crlf_lf_and_utf16_files_stage_identically(tmp_path, run):
    # The fixture itself is UTF-8 with BOM and CRLF; the same rows as plain UTF-8 with LF,
    # and as Excel's "Unicode text" (UTF-16LE with BOM, tab-delimited, CRLF).
    rows = _hubspot_rows()
    variants = {
        "bom_crlf": (FIXTURES / "hubspot_export" / "deals.csv").read_bytes(),
        "plain_lf": _csv_text(rows).encode("utf-8"),
        "utf16_tsv": b"\xff\xfe" + _csv_text(rows, "\t", "\r\n").encode("utf-16-le"),
    }
    assert variants["bom_crlf"].startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in variants["bom_crlf"] and b"\r\n" not in variants["plain_lf"]
    results = {}
    for name, content in variants.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "deals.csv").write_bytes(content)
        results[name] = snapshot(run(source("hubspot_export", name), duckdb_path=f"{name}.duckdb"))

    assert results["plain_lf"] == results["bom_crlf"]
    assert results["utf16_tsv"] == results["bom_crlf"]
    assert len(results["bom_crlf"]) == 13


def test_hubspot_portal_timezone_is_converted_to_utc(tmp_path, run):
    # A Berlin portal exports local times: CEST (UTC+2) in July, CET (UTC+1) in January.
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "deals.csv").write_text(
        f"{HUBSPOT_HEADER}\n"
        "501,Summer close,Closed Won,100,2025-07-01 10:00,2025-01-15 10:00,Ann,Sales,USD\n",
        encoding="utf-8",
    )
    con = run(source("hubspot_export", timezone="Europe/Berlin"))

    assert staged(con, "deal_id, created_at, closed_at") == [
        ("501", ts(2025, 1, 15, 9, 0), ts(2025, 7, 1, 8, 0)),
    ]


def test_extra_unknown_columns_are_ignored(tmp_path, run):
    rows = _hubspot_rows()
    extra = ["Deal Type", "Last Activity Date", "Amount in company currency", "Deal Description"]
    wide = [[*rows[0], *extra]] + [
        [*row, "newbusiness", "2021-01-05 10:00", "999", "notes; with, punctuation"]
        for row in rows[1:]
    ]
    (tmp_path / "wide").mkdir()
    (tmp_path / "wide" / "deals.csv").write_text(_csv_text(wide), encoding="utf-8")
    copy_fixture(tmp_path, "hubspot_export", "narrow")

    narrow = run(source("hubspot_export", "narrow"), duckdb_path="narrow.duckdb")
    widened = run(source("hubspot_export", "wide"), duckdb_path="wide.duckdb")
    assert snapshot(widened) == snapshot(narrow)
    assert staged(widened) == HUBSPOT_DEALS


def test_quoted_fields_with_embedded_newlines_and_commas(tmp_path, run):
    # CRM UIs export multi-line text (names, descriptions) quoted, with CRLF inside.
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "deals.csv").write_bytes(
        (
            f"{HUBSPOT_HEADER}\r\n"
            '601,"Acme, Inc.\r\nRenewal ""2025""",Closed Won,"$1,000",'
            "2025-03-01 10:00,2025-02-01 09:00,Ann,Sales,USD\r\n"
            "602,Plain deal,Closed Lost,500,2025-03-02 10:00,2025-02-01 09:00,"
            '"Lee,\nBo",Sales,USD\r\n'
        ).encode()
    )
    con = run(source("hubspot_export"))

    assert staged(con, "deal_id, deal_name, owner_id, amount, is_won") == [
        ("601", 'Acme, Inc.\r\nRenewal "2025"', "Ann", 1000.0, True),
        ("602", "Plain deal", "Lee,\nBo", 500.0, False),
    ]


# --- Files that cannot be read ------------------------------------------------------------------

def test_missing_required_column_names_the_column_and_the_file(tmp_path, run):
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "deals_2025-07-01.csv").write_text(
        "Record ID,Deal Name,Deal Stage,Amount,Close Date,Deal owner\n"
        "1,Acme,Closed Won,100,2025-07-01 10:00,Ann\n",
        encoding="utf-8",
    )
    with pytest.raises(ExportFileError) as error:
        run(source("hubspot_export"))
    message = str(error.value)
    assert "deals_2025-07-01.csv" in message
    assert "Create Date" in message
    assert "created_at" in message
    assert "\n" not in message


def test_latin1_file_is_a_clear_error(tmp_path, run):
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "deals.csv").write_bytes(
        f"{HUBSPOT_HEADER}\n701,Café Lumière,Closed Won,100,2025-03-01 10:00,"
        "2025-02-01 09:00,Ann,Sales,EUR\n".encode("latin-1")
    )
    with pytest.raises(ExportFileError) as error:
        run(source("hubspot_export"))
    message = str(error.value)
    assert message.startswith("deals.csv: ")
    assert "UTF-8" in message


def test_latin1_byte_deep_in_a_large_file_is_a_clear_error(tmp_path, run):
    # The first non-ASCII character often sits far down a real export (past the sniffed head).
    lines = [HUBSPOT_HEADER] + [
        f"{800 + i},Deal {i},Closed Won,100,2025-03-01 10:00,2025-02-01 09:00,Ann,Sales,USD"
        for i in range(1200)
    ]
    lines.append("9999,Café Lumière,Closed Won,100,2025-03-01 10:00,2025-02-01 09:00,Ann,Sales,USD")
    content = ("\n".join(lines) + "\n").encode("latin-1")
    assert len(content) > 1 << 16
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "deals.csv").write_bytes(content)

    with pytest.raises(ExportFileError) as error:
        run(source("hubspot_export"))
    message = str(error.value)
    assert message.startswith("deals.csv: ")
    assert "UTF-8" in message, message


def test_empty_file_is_an_error_naming_it_and_nothing_is_loaded(tmp_path, run):
    copy_fixture(tmp_path, "hubspot_export")
    (tmp_path / "exports" / "deals_2021-01-01.csv").write_bytes(b"")
    with pytest.raises(ExportFileError) as error:
        run(source("hubspot_export"))
    assert "deals_2021-01-01.csv" in str(error.value)
    assert "empty" in str(error.value)
    # The stream's files load in one transaction: deals.csv did not land either.
    with open_with_raw(tmp_path / "crm_roi.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.deals").fetchone()[0] == 0
        assert con.execute(
            "SELECT count(*) FROM raw.loaded_files WHERE stream = 'deals'"
        ).fetchone()[0] == 0


def test_header_only_file_loads_zero_rows_without_error(tmp_path, run):
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "deals.csv").write_bytes(
        b"\xef\xbb\xbf" + f"{HUBSPOT_HEADER}\r\n".encode()
    )
    con = run(source("hubspot_export"))

    assert staged(con) == []
    assert quarantined(con) == []
    assert con.execute(
        "SELECT file_name, row_count FROM raw.loaded_files WHERE source = 'crm'"
    ).fetchall() == [("deals.csv", 0)]


# --- Each file loaded once --------------------------------------------------------------------

def test_loading_the_same_folder_twice_is_a_no_op(tmp_path, run):
    copy_fixture(tmp_path, "hubspot_export")
    first = run(source("hubspot_export"))
    before = (
        snapshot(first), quarantined(first), raw_count(first),
        first.execute("SELECT * FROM raw.loaded_files ORDER BY source, stream").fetchall(),
    )
    first.close()

    second = run(source("hubspot_export"))
    after = (
        snapshot(second), quarantined(second), raw_count(second),
        second.execute("SELECT * FROM raw.loaded_files ORDER BY source, stream").fetchall(),
    )
    assert after == before
    assert raw_count(second) == 15


def test_file_changed_after_loading_is_an_error_naming_it(tmp_path, run):
    folder = copy_fixture(tmp_path, "hubspot_export")
    run(source("hubspot_export")).close()
    with (folder / "deals.csv").open("ab") as handle:
        handle.write(b"3000000001,Late edit,Closed Won,5,2021-01-02 10:00,2021-01-01 10:00,"
                     b"Maria Lopez,Sales Pipeline,USD\r\n")

    with pytest.raises(ExportFileError) as error:
        run(source("hubspot_export"))
    assert "deals.csv" in str(error.value)
    assert "changed" in str(error.value)
    # The earlier load stands.
    with open_with_raw(tmp_path / "crm_roi.duckdb", read_only=True) as con:
        assert raw_count(con) == 15
        assert con.execute("SELECT count(*) FROM staging.deals").fetchone()[0] == 13
