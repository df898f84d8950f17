"""Staging row rules (docs/row-rules.md), each on a tiny canonical export.

Every test writes a few rows, runs the real SQL models through the `project`
fixture and asserts what lands in staging.*, quarantine.rejected_rows and
kpi.periodic. Defaults: as_of 2025-03-31, go-live 2025-01-01, 12 baseline
months, monthly periods, USD base. Times in comments are UTC unless marked.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest

from connectors.files.reader import ExportFileError
from pipelines.config import load_settings
from pipelines.warehouse import open_with_raw
from tests.conftest import DEAL_COLUMNS, deal, gl, rows, run_pipeline, write_csv

FX_COLUMNS = ["date", "currency", "rate_to_base"]
CUSTOMER_COLUMNS = ["customer_id", "name", "started_at", "churned_at", "mrr"]


def staged(con, deal_id: str) -> list[dict]:
    return rows(con, "SELECT * FROM staging.deals WHERE deal_id = ?", [deal_id])


def staged_ids(con) -> list[str]:
    return [r["deal_id"] for r in rows(con, "SELECT deal_id FROM staging.deals ORDER BY deal_id")]


def quarantined(con, table: str = "deals") -> list[dict]:
    return rows(
        con,
        "SELECT * FROM quarantine.rejected_rows WHERE table_name = ? ORDER BY row_number",
        [table],
    )


def period(con, start: str) -> dict:
    (row,) = rows(
        con, "SELECT * FROM kpi.periodic WHERE period_start = ?", [dt.date.fromisoformat(start)]
    )
    return row


# --- timestamps -------------------------------------------------------------------


def test_offset_timestamps_are_stored_in_utc_and_counted_in_their_utc_month(project):
    # '2025-01-31T23:30:00-02:00' is 2025-02-01 01:30 UTC  -> February
    # '2025-02-01T00:30:00+02:00' is 2025-01-31 22:30 UTC  -> January
    # '2025-01-31T23:59:59Z'                               -> January
    # '2025-01-31T23:30:00' has no offset, so it is UTC    -> January
    # '2025-02-01' is a bare date: midnight UTC            -> February
    con = project(deals=[
        deal("M1", "2025-01-31T23:30:00-02:00"),
        deal("M2", "2025-02-01T00:30:00+02:00"),
        deal("M3", "2025-01-31T23:59:59Z"),
        deal("M4", "2025-01-31T23:30:00"),
        deal("M5", "2025-02-01"),
    ])
    created = dict(con.execute("SELECT deal_id, created_at FROM staging.deals").fetchall())
    assert created == {
        "M1": dt.datetime(2025, 2, 1, 1, 30),
        "M2": dt.datetime(2025, 1, 31, 22, 30),
        "M3": dt.datetime(2025, 1, 31, 23, 59, 59),
        "M4": dt.datetime(2025, 1, 31, 23, 30),
        "M5": dt.datetime(2025, 2, 1, 0, 0),
    }
    assert period(con, "2025-01-01")["deals_created"] == 3  # M2, M3, M4
    assert period(con, "2025-02-01")["deals_created"] == 2  # M1, M5


def test_close_just_before_midnight_local_time_counts_in_the_next_utc_month(project):
    # Closed '2025-02-28T22:00:00-03:00' = 2025-03-01 01:00 UTC: a March win, not February.
    con = project(deals=[deal("W1", "2025-01-10", "2025-02-28T22:00:00-03:00", won=True)])
    (row,) = staged(con, "W1")
    assert row["closed_at"] == dt.datetime(2025, 3, 1, 1, 0)
    assert period(con, "2025-02-01")["deals_won"] == 0
    assert period(con, "2025-03-01")["deals_won"] == 1


def test_bare_date_is_midnight_utc(project):
    con = project(deals=[deal("B1", "2025-01-15", "2025-01-20", won=True)])
    (row,) = staged(con, "B1")
    assert row["created_at"] == dt.datetime(2025, 1, 15, 0, 0)
    assert row["closed_at"] == dt.datetime(2025, 1, 20, 0, 0)


# --- numbers ----------------------------------------------------------------------


def test_amounts_with_symbols_separators_and_accounting_negatives_parse(project):
    # "$1,000.50" = 1000.5 ; "(500)" = -500 ; "2,500" = 2500
    con = project(
        deals=[
            deal("N1", "2025-01-05", "2025-01-10", won=True, amount="$1,000.50"),
            deal("N2", "2025-01-05", "2025-01-10", won=True, amount="(500)"),
            deal("N3", "2025-01-05", "2025-01-10", won=True, amount="2,500"),
        ],
        finance=[gl("G1", "2025-01-10", "6200", "(250.25)")],
    )
    amounts = dict(con.execute("SELECT deal_id, amount FROM staging.deals").fetchall())
    assert amounts == {"N1": pytest.approx(1000.5), "N2": pytest.approx(-500.0),
                       "N3": pytest.approx(2500.0)}
    # revenue_won January = 1000.5 - 500 + 2500 = 3000.5
    assert period(con, "2025-01-01")["revenue_won"] == pytest.approx(3000.5)
    assert period(con, "2025-01-01")["sales_marketing_spend"] == pytest.approx(-250.25)
    assert quarantined(con) == []


# --- one row per key --------------------------------------------------------------


def test_accounting_negative_with_currency_symbol_parses(project):
    # Excel's accounting format writes a negative as "($1,000.50)": the symbol, the
    # thousands separator and the parentheses together. "$1,000.50" = 1000.5 and
    # "(500)" = -500 both parse, so their combination is -1000.5, not a rejection.
    con = project(
        deals=[deal("N1", "2025-01-05", "2025-01-10", won=True, amount="($1,000.50)")],
        finance=[gl("G1", "2025-01-10", "6200", "($250.25)")],
    )
    assert quarantined(con) == []
    assert quarantined(con, "finance_gl") == []
    (row,) = staged(con, "N1")
    assert row["amount"] == pytest.approx(-1000.5)
    assert period(con, "2025-01-01")["sales_marketing_spend"] == pytest.approx(-250.25)


def test_duplicate_key_latest_updated_at_wins_regardless_of_file_order(project):
    # Row 1 updated 2025-01-20 (amount 200) beats row 2 updated 2025-01-10 (amount 100).
    con = project(deals=[
        deal("D1", "2025-01-05", "2025-01-15", won=True, amount="200", updated_at="2025-01-20"),
        deal("D1", "2025-01-05", "2025-01-15", won=True, amount="100", updated_at="2025-01-10"),
    ])
    (row,) = staged(con, "D1")
    assert row["amount"] == pytest.approx(200.0)
    assert row["updated_at"] == dt.datetime(2025, 1, 20)
    assert period(con, "2025-01-01")["revenue_won"] == pytest.approx(200.0)


def test_duplicate_key_updated_at_compared_in_utc(project):
    # '2025-01-20T01:00:00+05:00' is 2025-01-19 20:00 UTC, earlier than
    # '2025-01-19T21:00:00Z', so the second row (amount 300) wins.
    con = project(deals=[
        deal("D1", "2025-01-05", "2025-01-15", won=True, amount="700",
             updated_at="2025-01-19T21:00:00Z"),
        deal("D1", "2025-01-05", "2025-01-15", won=True, amount="300",
             updated_at="2025-01-20T01:00:00+05:00"),
    ])
    (row,) = staged(con, "D1")
    assert row["amount"] == pytest.approx(700.0)


def test_duplicate_key_tie_on_updated_at_goes_to_the_later_row_in_the_file(project):
    con = project(deals=[
        deal("D1", "2025-01-05", "2025-01-15", won=True, amount="100", updated_at="2025-01-20"),
        deal("D1", "2025-01-05", "2025-01-15", won=True, amount="300", updated_at="2025-01-20"),
    ])
    (row,) = staged(con, "D1")
    assert row["amount"] == pytest.approx(300.0)


def test_line_numbers_and_ties_hold_in_a_file_read_in_parallel(project):
    # 300,000 lines: several row groups, read by several threads. Line numbers must still be
    # the lines of the file, and a tie on updated_at must still go to the later line.
    filler = [deal(f"F{i:06d}", "2025-01-05", updated_at="2025-01-06") for i in range(300_000)]
    filler[0] = deal("D1", "2025-01-05", "2025-01-15", won=True, amount="100", updated_at="2025-01-20")
    filler[-1] = deal("D1", "2025-01-05", "2025-01-15", won=True, amount="300", updated_at="2025-01-20")
    filler[123_456] = deal("BAD", "not a date")
    con = project(deals=filler)
    (row,) = staged(con, "D1")
    assert row["amount"] == pytest.approx(300.0)
    (rejected,) = quarantined(con)
    assert (rejected["key"], rejected["row_number"]) == ("BAD", 123_457)
    # A file row's line is its place among its batch's row ids (not stored: raw keeps no line numbers).
    assert con.execute("SELECT count(*), count(_row_number) FROM raw.deals").fetchone() == (300_000, 0)
    out_of_place = con.execute(
        "SELECT count(*) FROM (SELECT deal_id, rowid - min(rowid) OVER () + 1 AS line FROM raw.deals) "
        "WHERE deal_id LIKE 'F%' AND CAST(substr(deal_id, 2) AS INTEGER) + 1 <> line"
    ).fetchone()[0]
    assert out_of_place == 0


def test_rejected_latest_version_makes_the_key_absent_older_version_does_not_return(project):
    # The latest version (updated 2025-01-20) closes before it was created -> rejected.
    # The valid older version (updated 2025-01-10, won 500) must not come back.
    con = project(deals=[
        deal("D1", "2025-01-05", "2025-01-08", won=True, amount="500", updated_at="2025-01-10"),
        deal("D1", "2025-01-05", "2025-01-04", won=True, amount="900", updated_at="2025-01-20"),
        deal("D2", "2025-01-05"),
    ])
    assert staged_ids(con) == ["D2"]
    (bad,) = quarantined(con)
    assert bad["key"] == "D1"
    assert bad["reason"] == "closed_at before created_at"
    jan = period(con, "2025-01-01")
    assert jan["deals_won"] == 0
    assert jan["revenue_won"] == 0
    assert jan["deals_created"] == 1  # D2 only


def test_row_with_unparseable_updated_at_is_rejected_alone_and_skips_dedup(project):
    # Row 2 has updated_at 'soon': it is quarantined on its own and cannot
    # displace row 1, which loads.
    con = project(deals=[
        deal("D1", "2025-01-05", "2025-01-15", won=True, amount="100", updated_at="2025-01-20"),
        deal("D1", "2025-01-05", "2025-01-15", won=True, amount="999", updated_at="soon"),
    ])
    (row,) = staged(con, "D1")
    assert row["amount"] == pytest.approx(100.0)
    (bad,) = quarantined(con)
    assert bad["key"] == "D1"
    assert bad["reason"] == "unparseable updated_at"
    assert period(con, "2025-01-01")["revenue_won"] == pytest.approx(100.0)


def test_missing_updated_at_column_defaults_to_later_of_created_and_closed(project):
    # No updated_at column at all. D1 version 1 (won, closed 2025-01-20) defaults to
    # 2025-01-20; version 2 (open, later in the file) defaults to created 2025-01-05.
    # So version 1 wins although it comes first.
    columns = [c for c in DEAL_COLUMNS if c != "updated_at"]
    versions = [
        deal("D1", "2025-01-05", "2025-01-20", won=True, amount="500"),
        deal("D1", "2025-01-05", amount="100"),
    ]
    con = project(files={"deals": (columns, versions)})
    (row,) = staged(con, "D1")
    assert row["is_won"] is True
    assert row["amount"] == pytest.approx(500.0)
    assert row["updated_at"] == dt.datetime(2025, 1, 20)


def test_empty_updated_at_value_defaults_to_later_of_created_and_closed(project):
    con = project(deals=[
        deal("C1", "2025-01-05T08:00:00Z", "2025-01-20T10:00:00Z", won=True),
        deal("O1", "2025-01-07T08:00:00Z", closed_at="2026-06-30"),  # open: closed_at ignored
    ])
    updated = dict(con.execute("SELECT deal_id, updated_at FROM staging.deals").fetchall())
    assert updated == {
        "C1": dt.datetime(2025, 1, 20, 10, 0),
        "O1": dt.datetime(2025, 1, 7, 8, 0),
    }


# --- rejections -------------------------------------------------------------------

EUR_FROM_JAN_5 = {"fx_rates": (FX_COLUMNS, [["2025-01-05", "EUR", "1.2"]])}

REJECTIONS = [
    (deal("X1", "yesterday"), "unparseable created_at", {}),
    (deal("", "2025-01-10"), "missing deal_id", {}),
    ({**deal("X1", "2025-01-10"), "is_won": "true"}, "is_won while not is_closed", {}),
    (deal("X1", "2025-01-10", "", won=False), "is_closed without closed_at", {}),
    (deal("X1", "2025-01-10", "2025-01-09", won=True), "closed_at before created_at", {}),
    (deal("X1", "2025-01-02", "2025-01-03", won=True, currency="EUR"),
     "no fx rate for EUR on or before 2025-01-03", EUR_FROM_JAN_5),
    (deal("X1", "2025-01-10", amount="12abc"), "unparseable amount", {}),
    (deal("X1", "2025-01-10", amount="100", currency=""), "missing currency", {}),
    (deal("X1", ""), "missing created_at", {}),
    (deal("X1", "2025-01-10", "next week", won=True), "unparseable closed_at", {}),
    ({**deal("X1", "2025-01-10"), "is_closed": "perhaps"}, "unparseable is_closed", {}),
    (deal("X1", "2025-01-10", is_deleted="gone"), "unparseable is_deleted", {}),
]


@pytest.mark.parametrize(("bad", "reason", "files"), REJECTIONS, ids=[r[1] for r in REJECTIONS])
def test_rejected_row_is_quarantined_with_its_reason_and_other_rows_still_load(
    project, bad, reason, files
):
    # G1 (won 1000 in January) and G2 (open, January) are valid around the bad row.
    con = project(
        deals=[
            deal("G1", "2025-01-05", "2025-01-20", won=True, amount="1000"),
            bad,
            deal("G2", "2025-01-06"),
        ],
        files=files,
    )
    assert staged_ids(con) == ["G1", "G2"]
    (rejected,) = quarantined(con)
    assert rejected["reason"] == reason
    assert rejected["table_name"] == "deals"
    assert rejected["file_name"] == "deals.csv"
    assert rejected["source"] == "files_1"
    assert rejected["key"] == (bad["deal_id"] or None)
    assert bad["created_at"] in rejected["payload"]
    jan = period(con, "2025-01-01")
    # The rejected row is counted nowhere: only G1 and G2.
    assert jan["deals_created"] == 2
    assert jan["deals_won"] == 1
    assert jan["deals_lost"] == 0
    assert jan["revenue_won"] == pytest.approx(1000.0)


def test_every_failed_rule_is_listed_in_the_reason(project):
    con = project(deals=[deal("X1", "yesterday", amount="12abc")])
    (rejected,) = quarantined(con)
    assert sorted(rejected["reason"].split("; ")) == ["unparseable amount",
                                                      "unparseable created_at"]


def test_empty_amount_is_null_and_needs_no_currency(project):
    # amount '' and currency '': loads with a null amount, adds 0 to revenue.
    con = project(deals=[
        deal("E1", "2025-01-05", "2025-01-10", won=True, amount="", currency=""),
        deal("E2", "2025-01-05", "2025-01-10", won=True, amount="300"),
    ])
    (row,) = staged(con, "E1")
    assert row["amount"] is None
    assert row["amount_base"] is None
    assert quarantined(con) == []
    assert period(con, "2025-01-01")["revenue_won"] == pytest.approx(300.0)


def test_closed_at_is_ignored_for_open_deals(project):
    # Salesforce keeps an expected close date on open deals: garbage or a date
    # before creation must not reject an open deal.
    con = project(deals=[
        deal("O1", "2025-01-10", closed_at="end of quarter"),
        deal("O2", "2025-01-10", closed_at="2025-01-01"),
    ])
    assert quarantined(con) == []
    assert [r["closed_at"] for r in rows(con, "SELECT closed_at FROM staging.deals")] == [
        None, None]
    jan = period(con, "2025-01-01")
    assert jan["deals_created"] == 2
    assert jan["deals_won"] + jan["deals_lost"] == 0


def test_same_utc_day_close_is_valid(project):
    # S1: created 15:00, closed the same day as a bare date (midnight, earlier in time).
    # S2: created 2025-01-10 00:30 UTC, closed '2025-01-09T23:30:00-02:00' = 2025-01-10 01:30 UTC:
    #     the local date is the day before, the UTC date is the same day.
    # S3: created '2025-01-10T01:00:00+02:00' = 2025-01-09 23:00 UTC, closed bare '2025-01-09'.
    con = project(deals=[
        deal("S1", "2025-01-10T15:00:00Z", "2025-01-10", won=True),
        deal("S2", "2025-01-10T00:30:00Z", "2025-01-09T23:30:00-02:00", won=True),
        deal("S3", "2025-01-10T01:00:00+02:00", "2025-01-09", won=True),
    ])
    assert quarantined(con) == []
    assert staged_ids(con) == ["S1", "S2", "S3"]
    jan = period(con, "2025-01-01")
    assert jan["deals_won"] == 3
    assert jan["sales_cycle_days_median"] == pytest.approx(0.0)


def test_deleted_deals_count_nowhere(project):
    con = project(deals=[
        deal("X1", "2025-01-05", "2025-01-20", won=True, amount="1000", is_deleted="true"),
        deal("X2", "2025-01-05", "2025-01-21", won=False, is_deleted="true"),
        deal("X3", "2025-01-06", is_deleted="true"),
        deal("K1", "2025-01-07", "2025-01-22", won=True, amount="500", is_deleted="false"),
    ])
    jan = period(con, "2025-01-01")
    assert jan["deals_created"] == 1
    assert jan["deals_won"] == 1
    assert jan["deals_lost"] == 0
    assert jan["win_rate"] == pytest.approx(1.0)
    assert jan["revenue_won"] == pytest.approx(500.0)
    assert jan["avg_deal_size"] == pytest.approx(500.0)
    assert jan["sales_cycle_days_mean"] == pytest.approx(15.0)  # K1 only: Jan 7 -> Jan 22


def test_customer_churned_before_started_is_rejected(project):
    con = project(files={"customers": (CUSTOMER_COLUMNS, [
        ["C1", "Good", "2024-06-01", "", "100"],
        ["C2", "Bad", "2024-06-01", "2024-05-31", "100"],
    ])})
    assert [r["customer_id"] for r in rows(con, "SELECT * FROM staging.customers")] == ["C1"]
    (bad,) = quarantined(con, "customers")
    assert bad["key"] == "C2"
    assert bad["reason"] == "churned_at before started_at"


# --- currency ---------------------------------------------------------------------

FX = [
    ["2025-01-01", "EUR", "1.10"],
    ["2025-01-05", "EUR", "1.20"],
    ["2024-12-31", "GBP", "1.25"],
]


def test_won_deal_converted_at_latest_rate_on_or_before_utc_close_date(project):
    # E1 closed 2025-01-04 -> EUR rate of 2025-01-01 (1.10): 100 -> 110.
    # E2 closed '2025-01-04T23:30:00-02:00' = 2025-01-05 01:30 UTC -> rate of 2025-01-05
    #    (1.20): 120.
    # G1 closed 2025-01-04, '£1,000' GBP -> rate of 2024-12-31 (1.25): 1250.
    # U1 USD (base) -> rate 1 with no USD row in fx_rates: 100.
    con = project(
        deals=[
            deal("E1", "2025-01-02", "2025-01-04", won=True, amount="100", currency="EUR"),
            deal("E2", "2025-01-02", "2025-01-04T23:30:00-02:00", won=True, amount="100",
                 currency="EUR"),
            deal("G1", "2025-01-02", "2025-01-04", won=True, amount="£1,000", currency="GBP"),
            deal("U1", "2025-01-02", "2025-01-04", won=True, amount="100"),
        ],
        files={"fx_rates": (FX_COLUMNS, FX)},
    )
    priced = {r["deal_id"]: (r["fx_rate"], r["amount_base"])
              for r in rows(con, "SELECT * FROM staging.deals")}
    assert priced == {
        "E1": (pytest.approx(1.10), pytest.approx(110.0)),
        "E2": (pytest.approx(1.20), pytest.approx(120.0)),
        "G1": (pytest.approx(1.25), pytest.approx(1250.0)),
        "U1": (pytest.approx(1.0), pytest.approx(100.0)),
    }
    # revenue_won January = 110 + 120 + 1250 + 100 = 1580
    assert period(con, "2025-01-01")["revenue_won"] == pytest.approx(1580.0)


def test_open_deal_converted_at_rate_of_its_created_date(project):
    # O1 open, created 2025-01-03 -> 1.10 (its expected close date is ignored);
    # O2 open, created 2025-01-06 -> 1.20.
    con = project(
        deals=[
            deal("O1", "2025-01-03", closed_at="2025-01-09", amount="100", currency="EUR"),
            deal("O2", "2025-01-06", amount="100", currency="EUR"),
        ],
        files={"fx_rates": (FX_COLUMNS, FX)},
    )
    base = dict(con.execute("SELECT deal_id, amount_base FROM staging.deals").fetchall())
    assert base == {"O1": pytest.approx(110.0), "O2": pytest.approx(120.0)}


def test_gl_lines_converted_at_rate_of_posted_on_and_rejected_without_one(project):
    # L1 posted 2025-01-04: 1000 EUR x 1.10 = 1100; L2 posted 2025-01-05: 1000 x 1.20 = 1200.
    # L3 posted 2024-12-31: no EUR rate yet -> rejected; it adds nothing to December.
    con = project(
        finance=[
            gl("L1", "2025-01-04", "6200", "1000", "EUR"),
            gl("L2", "2025-01-05", "6200", "1000", "EUR"),
            gl("L3", "2024-12-31", "6200", "1000", "EUR"),
        ],
        files={"fx_rates": (FX_COLUMNS, FX)},
    )
    base = dict(con.execute("SELECT entry_id, amount_base FROM staging.finance_gl").fetchall())
    assert base == {"L1": pytest.approx(1100.0), "L2": pytest.approx(1200.0)}
    (bad,) = quarantined(con, "finance_gl")
    assert bad["key"] == "L3"
    assert bad["reason"] == "no fx rate for EUR on or before 2024-12-31"
    assert period(con, "2025-01-01")["sales_marketing_spend"] == pytest.approx(2300.0)
    assert period(con, "2024-12-01")["sales_marketing_spend"] == 0


# --- loading ----------------------------------------------------------------------


def _state(con) -> dict:
    return {
        "raw.deals": con.execute("SELECT count(*) FROM raw.deals").fetchone()[0],
        "raw.finance_gl": con.execute("SELECT count(*) FROM raw.finance_gl").fetchone()[0],
        "loaded_files": con.execute("SELECT count(*) FROM raw.loaded_files").fetchone()[0],
        "staging.deals": con.execute("SELECT count(*) FROM staging.deals").fetchone()[0],
        "quarantine": con.execute("SELECT count(*) FROM quarantine.rejected_rows").fetchone()[0],
        "revenue": con.execute("SELECT sum(revenue_won) FROM kpi.periodic").fetchone()[0],
        "cost": con.execute("SELECT sum(crm_cost) FROM kpi.periodic").fetchone()[0],
    }


def test_loading_the_same_export_twice_changes_nothing(project, tmp_path):
    con = project(
        deals=[
            deal("D1", "2025-01-05", "2025-01-20", won=True, amount="1000"),
            deal("D2", "2025-01-06"),
            deal("X1", "yesterday"),
        ],
        finance=[gl("G1", "2025-01-10", "6100", "250")],
    )
    first = _state(con)
    assert first == {"raw.deals": 3, "raw.finance_gl": 1, "loaded_files": 2,
                     "staging.deals": 2, "quarantine": 1, "revenue": 1000.0, "cost": 250.0}
    con.close()  # one process may not hold a read-only and a writing handle at once

    again = run_pipeline(load_settings(tmp_path / "crm_roi.yaml"))
    try:
        assert _state(again) == first
    finally:
        again.close()


def _loaded_files(settings) -> list[tuple]:
    with open_with_raw(settings.duckdb_path, read_only=True) as con:
        return con.execute(
            "SELECT file_name, sha256, size_bytes, modified_ns FROM raw.loaded_files ORDER BY file_name"
        ).fetchall()


def test_an_export_touched_but_unchanged_is_skipped_and_its_new_time_kept(project, tmp_path):
    project(deals=[deal("D1", "2025-01-05", "2025-01-20", won=True, amount="1000")]).close()
    settings = load_settings(tmp_path / "crm_roi.yaml")
    export = tmp_path / "exports" / "deals.csv"
    (name, digest, size, modified_ns), *_ = _loaded_files(settings)
    assert (name, size, modified_ns) == ("deals.csv", export.stat().st_size, export.stat().st_mtime_ns)

    os.utime(export, ns=(modified_ns + 10**9, modified_ns + 10**9))  # copied or touched, same bytes
    run_pipeline(settings).close()
    (_, digest_after, _, modified_after), *_ = _loaded_files(settings)
    assert (digest_after, modified_after) == (digest, modified_ns + 10**9)
    with open_with_raw(settings.duckdb_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.deals").fetchone()[0] == 1


def test_an_export_rewritten_with_the_same_size_is_refused(project, tmp_path):
    project(deals=[deal("D1", "2025-01-05", "2025-01-20", won=True, amount="1000")]).close()
    export = tmp_path / "exports" / "deals.csv"
    before = export.stat()
    export.write_bytes(export.read_bytes().replace(b"1000", b"9000"))
    os.utime(export, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert export.stat().st_size == before.st_size
    with pytest.raises(ExportFileError, match=r"deals\.csv: changed since it was loaded"):
        run_pipeline(load_settings(tmp_path / "crm_roi.yaml"))


def test_an_export_with_its_loaded_size_and_time_is_not_read_again(project, tmp_path):
    # The documented trade-off: size and modification time stand for the content, as for
    # rsync and make. A same-size edit that also restores the old time is not noticed.
    project(deals=[deal("D1", "2025-01-05", "2025-01-20", won=True, amount="1000")]).close()
    export = tmp_path / "exports" / "deals.csv"
    before = export.stat()
    export.write_bytes(export.read_bytes().replace(b"1000", b"9000"))
    os.utime(export, ns=(before.st_atime_ns, before.st_mtime_ns))
    con = run_pipeline(load_settings(tmp_path / "crm_roi.yaml"))
    try:
        (row,) = staged(con, "D1")
        assert row["amount"] == pytest.approx(1000.0)
    finally:
        con.close()


def test_delta_file_in_the_same_folder_updates_a_deal(project, tmp_path):
    # Night 1: deals.csv has D1 open. Night 2: deals_2025-02-01.csv (a delta) has D1 won
    # for 700 on 2025-02-01. After night 2, D1 is won and counts in February only.
    con = project(deals=[
        deal("D1", "2025-01-05", amount="700", updated_at="2025-01-05"),
        deal("D2", "2025-01-06", "2025-01-25", won=True, amount="100"),
    ])
    assert period(con, "2025-02-01")["deals_won"] == 0
    con.close()

    write_csv(tmp_path / "exports" / "deals_2025-02-01.csv", DEAL_COLUMNS, [
        deal("D1", "2025-01-05", "2025-02-01", won=True, amount="700", updated_at="2025-02-01"),
    ])
    con = run_pipeline(load_settings(tmp_path / "crm_roi.yaml"))
    try:
        (row,) = staged(con, "D1")
        assert row["is_won"] is True
        assert row["closed_at"] == dt.datetime(2025, 2, 1)
        assert con.execute("SELECT count(*) FROM raw.deals").fetchone()[0] == 3
        jan, feb = period(con, "2025-01-01"), period(con, "2025-02-01")
        assert (jan["deals_created"], jan["deals_won"], jan["revenue_won"]) == (2, 1, 100.0)
        assert (feb["deals_won"], feb["revenue_won"]) == (1, 700.0)
    finally:
        con.close()


def test_delta_file_loaded_with_the_snapshot_in_name_order(project):
    # Both files present on the first run: deals.csv sorts before deals_2025-02-01.csv,
    # so the delta's version of D1 (same updated_at) is the later row and wins.
    con = project(
        deals=[deal("D1", "2025-01-05", amount="700", updated_at="2025-02-01")],
        files={"deals_2025-02-01": (DEAL_COLUMNS, [
            deal("D1", "2025-01-05", "2025-02-01", won=True, amount="700",
                 updated_at="2025-02-01"),
        ])},
    )
    (row,) = staged(con, "D1")
    assert row["is_won"] is True
    assert period(con, "2025-02-01")["revenue_won"] == pytest.approx(700.0)
