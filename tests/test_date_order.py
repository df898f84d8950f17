"""Day-first and month-first dates in real export files: read right, or stopped with one line.

The fixtures in tests/fixtures/dates/ are hand-made exports (see the README there).
Every expected date below is read off those files by hand: '06/07/2025' in a file
whose other values show it is day first is 6 July, never June 7.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest

from connectors.files.dates import DateOrderError
from pipelines.config import ConfigError, load_settings
from tests.conftest import ACCOUNTS, write_config

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dates"
RATES = "date,currency,rate_to_base\n2020-01-01,GBP,1.25\n"
GL = "entry_id,posted_on,account,description,vendor,amount,currency\nG1,2025-01-10,6100,CRM,Acme,500,USD\n"
CUSTOM = {"profile": "custom", "files": {"deals": "opportunities.csv"}, "won_stages": ["Won"],
          "lost_stages": ["Lost"], "currency": "USD",
          "columns": {"deal_id": "deal_ref", "stage": "status", "amount": "value", "created_at": "opened",
                      "closed_at": "closed"}}


def ts(*parts: int) -> dt.datetime:
    return dt.datetime(*parts)


@pytest.fixture
def run(tmp_path: Path, run_config):
    """Copy a fixture folder to exports/ and run the pipeline with `source` (and finance keys, another GL)."""
    (tmp_path / "rates").mkdir()
    (tmp_path / "rates" / "fx_rates.csv").write_text(RATES, encoding="utf-8")
    (tmp_path / "finance_gl.csv").write_text(GL, encoding="utf-8")

    def _run(fixture: str, source: dict, finance: dict | None = None, gl: str | None = None
             ) -> duckdb.DuckDBPyConnection:
        if not (tmp_path / "exports").exists():
            shutil.copytree(FIXTURES / fixture, tmp_path / "exports")
        if gl:
            shutil.copy(FIXTURES / gl, tmp_path / "finance_gl.csv")
        return run_config({
            "as_of": "2025-12-31", "go_live": "2025-01-01",
            "sources": [{"kind": "files", "name": "crm", "path": "exports", **source},
                        {"kind": "files", "name": "rates", "path": "rates"}],
            "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS, **(finance or {})},
        })

    return _run


def deals(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(
        "SELECT deal_id, is_won, created_at, closed_at FROM staging.deals ORDER BY deal_id").fetchall()


def test_a_uk_hubspot_export_is_read_day_first(run):
    # Close Date holds 25/07 and Create Date 13/05: both columns are day first, so the
    # ambiguous 06/07/2025 16:00 is 6 July (formats tried month-first made it June 7).
    con = run("hubspot_dayfirst", {"profile": "hubspot_export"})
    assert deals(con) == [
        ("3101", True, ts(2025, 6, 2, 9, 15), ts(2025, 7, 6, 16, 0)),
        ("3102", False, ts(2025, 5, 13, 10, 0), ts(2025, 7, 25, 11, 30)),
        ("3103", True, ts(2025, 7, 1, 14, 20), ts(2025, 8, 3, 8, 45)),
        ("3104", False, ts(2025, 8, 11, 12, 0), None),
    ]
    assert con.execute("SELECT count(*) FROM quarantine.rejected_rows").fetchone()[0] == 0


def test_each_column_is_decided_by_its_own_values_whatever_its_shape(run):
    # opened: dotted, two-digit years, 25.03 and 14.04 make it day first; closed: slashes with
    # AM/PM times, 03/27 and 04/15 make it month first. One file, two orders, both right.
    con = run("shapes", CUSTOM)
    assert deals(con) == [
        ("S-1", True, ts(2025, 3, 25), ts(2025, 3, 27, 16, 5)),
        ("S-2", False, ts(2025, 4, 2), ts(2025, 4, 15, 11, 30)),
        ("S-3", True, ts(2025, 4, 14), ts(2025, 4, 16, 12, 0)),
    ]


def test_an_export_whose_dates_all_read_either_way_stops_with_one_line(run):
    with pytest.raises(DateOrderError) as stopped:
        run("ambiguous", CUSTOM)
    assert str(stopped.value) == (
        "opportunities.csv: column 'opened' (deals.created_at): every date reads either way "
        "(e.g. '02/01/2025'); set sources.0.date_format: '%d/%m/%Y' (day first) or '%m/%d/%Y' "
        "(month first), or sources.0.dayfirst: true or false"
    )


@pytest.mark.parametrize("setting", [{"date_format": "%d/%m/%Y"}, {"dayfirst": True}])
def test_the_same_export_loads_day_first_once_the_source_says_so(run, setting):
    con = run("ambiguous", {**CUSTOM, **setting})
    assert deals(con) == [
        ("A-1", True, ts(2025, 1, 2), ts(2025, 3, 6)),
        ("A-2", False, ts(2025, 2, 5), ts(2025, 4, 11)),
        ("A-3", True, ts(2025, 3, 7), ts(2025, 3, 8)),
        ("A-4", False, ts(2025, 4, 10), None),
    ]


def test_dayfirst_false_reads_the_same_values_month_first(run):
    con = run("ambiguous", {**CUSTOM, "dayfirst": False})
    assert deals(con)[0] == ("A-1", True, ts(2025, 2, 1), ts(2025, 6, 3))


def test_a_column_holding_both_orders_is_an_error_listing_its_lines(run):
    # closed: 25/02 (line 2) and 30/04 (line 5) are only day first; 03/28 (line 4) and
    # 05/19 (line 6) only month first. No setting can make both right.
    with pytest.raises(DateOrderError) as stopped:
        run("mixed", {**CUSTOM, "date_format": "%d/%m/%Y"})
    assert str(stopped.value) == (
        "opportunities.csv: column 'closed' (deals.closed_at) has dates in both orders: day first on "
        "lines 2, 5 (e.g. '25/02/2025'), month first on lines 4, 6 (e.g. '03/28/2025'); correct those rows "
        "in the export"
    )


def test_values_that_contradict_the_configured_order_stop_the_load(run):
    # The HubSpot file's values are day first; the source claims month first.
    with pytest.raises(DateOrderError) as stopped:
        run("hubspot_dayfirst", {"profile": "hubspot_export", "date_format": "%m/%d/%Y %H:%M"})
    message = str(stopped.value)
    assert message == ("deals.csv: column 'Create Date' (deals.created_at): the dates on line 3 (e.g. "
                       "'13/05/2025 10:00') can only be day first, but sources.0.date_format says month first; fix "
                       "sources.0.date_format or those rows"), message


def test_a_day_first_general_ledger_stops_until_finance_says_how_to_read_it(run):
    # finance_gl.csv's layout promises ISO dates; these are not (the example is the least value).
    with pytest.raises(DateOrderError) as stopped:
        run("hubspot_dayfirst", {"profile": "hubspot_export"}, gl="gl_dayfirst/finance_gl.csv")
    assert str(stopped.value) == (
        "finance_gl.csv: column 'posted_on' (finance_gl.posted_on): dates like '03/04/2025' are not ISO 8601 "
        "(YYYY-MM-DD), which canonical files use; set finance.date_format (e.g. '%d/%m/%Y' or '%m/%d/%Y') "
        "to read them"
    )


@pytest.mark.parametrize(("finance", "posted"), [
    ({"date_format": "%d/%m/%Y"}, [dt.date(2025, 2, 5), dt.date(2025, 4, 3), dt.date(2025, 11, 12)]),
    ({"dayfirst": False}, [dt.date(2025, 5, 2), dt.date(2025, 3, 4), dt.date(2025, 12, 11)]),
])
def test_the_general_ledger_reads_in_the_order_finance_names(run, finance, posted):
    con = run("hubspot_dayfirst", {"profile": "hubspot_export"}, finance, gl="gl_dayfirst/finance_gl.csv")
    got = con.execute("SELECT posted_on FROM staging.finance_gl ORDER BY entry_id").fetchall()
    assert [day for (day,) in got] == posted


def test_iso_dates_in_a_custom_export_are_never_ambiguous(run, tmp_path):
    # 2025-01-02 is 2 January whatever the source says about day/month order.
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "opportunities.csv").write_text(
        "deal_ref,status,value,opened,closed\nI-1,Won,10,2025-01-02,2025-03-04 10:00\n", encoding="utf-8")
    con = run("", {**CUSTOM, "dayfirst": False})
    assert deals(con) == [("I-1", True, ts(2025, 1, 2), ts(2025, 3, 4, 10, 0))]


def test_date_format_and_dayfirst_that_disagree_are_a_config_error(tmp_path):
    (tmp_path / "exports").mkdir()
    (tmp_path / "gl.csv").write_text(GL, encoding="utf-8")
    config = {"go_live": "2025-01-01", "finance": {"path": "gl.csv", "accounts": ACCOUNTS},
              "sources": [{"kind": "files", "path": "exports", "date_format": "%d.%m.%Y", "dayfirst": False}]}
    with pytest.raises(ConfigError) as error:
        load_settings(write_config(tmp_path, config))
    assert "sources.0: date_format '%d.%m.%Y' and dayfirst: false disagree; keep one" in str(error.value)
