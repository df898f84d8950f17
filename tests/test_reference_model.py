"""Hand-worked cases that prove the reference model itself.

Why: the reference model (tests/reference_model.py) is the yardstick the SQL
pipeline is cross-checked against, so it must first be checked against numbers
worked out by hand from the documented definitions. Each test writes a few CSV rows to tmp_path
and the expected numbers are derived in the comments.
"""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ACCOUNTS
from tests.reference_model import compute, parse_timestamp


def write_csv(path: Path, rows: list[dict[str, Any]], header: list[str] | None = None) -> Path:
    """Write rows (None -> empty cell) with the union of their keys as the header."""
    if header is None:
        header = []
        for row in rows:
            header += [name for name in row if name not in header]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def deal(deal_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid won deal of 100 USD created 2025-01-05, closed 2025-01-10."""
    row: dict[str, Any] = {
        "deal_id": deal_id,
        "deal_name": f"Deal {deal_id}",
        "account_id": "A1",
        "owner_id": "O1",
        "pipeline": "default",
        "stage": "won",
        "is_closed": "true",
        "is_won": "true",
        "amount": "100",
        "currency": "USD",
        "created_at": "2025-01-05T09:00:00Z",
        "closed_at": "2025-01-10T12:00:00Z",
        "updated_at": "2025-01-10T12:00:00Z",
        "is_deleted": "false",
    }
    row.update(overrides)
    return row


def gl(entry_id: str, posted_on: str, account: str, amount: str, currency: str = "USD") -> dict:
    """One finance GL line."""
    return {
        "entry_id": entry_id,
        "posted_on": posted_on,
        "account": account,
        "description": "",
        "vendor": "",
        "amount": amount,
        "currency": currency,
    }


def run(
    tmp_path: Path,
    *,
    deals: list[dict[str, Any]] | None = None,
    finance: list[dict[str, Any]] | None = None,
    customers: list[dict[str, Any]] | None = None,
    fx: list[dict[str, Any]] | None = None,
    csat: list[dict[str, Any]] | None = None,
    usage: list[dict[str, Any]] | None = None,
    **settings: Any,
) -> dict[str, list[dict[str, Any]]]:
    """Write the given streams to tmp_path and run the reference model.

    Defaults: monthly periods, go-live 2025-01-01 with a one-month baseline
    (December 2024), as_of 2025-01-31, USD base, margin/attribution 1, no risk,
    10% discount rate, no ARPA.
    """
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    write_csv(folder / "deals.csv", deals or [], header=None if deals else list(deal("x")))
    for name, rows in [("customers", customers), ("fx_rates", fx), ("csat", csat),
                       ("crm_usage", usage)]:  # fmt: skip
        if rows is not None:
            write_csv(folder / f"{name}.csv", rows)
    finance_file = write_csv(
        tmp_path / "finance_gl.csv",
        finance or [],
        header=None if finance else list(gl("", "", "", "")),
    )
    config: dict[str, Any] = {
        "as_of": date(2025, 1, 31),
        "go_live": date(2025, 1, 1),
        "baseline_months": 1,
        "period": "month",
        "base_currency": "USD",
        "gross_margin": 1.0,
        "attribution_share": 1.0,
        "risk_adjustment": 0.0,
        "discount_rate": 0.10,
        "arpa_monthly": None,
        "accounts": ACCOUNTS,
    }
    config.update(settings)
    return compute(folder, finance_file, config)


def by_start(rows: list[dict[str, Any]], start: date) -> dict[str, Any]:
    """The row of a period table whose period_start is start."""
    (row,) = [r for r in rows if r["period_start"] == start]
    return row


def rejected_keys(result: dict[str, list[dict[str, Any]]], table: str = "deals") -> list[str]:
    """Keys quarantined for one table, in order."""
    return [r["key"] for r in result["rejected"] if r["table"] == table]


# --------------------------------------------------------------------------
# ROI: the method's worked example
# --------------------------------------------------------------------------


def test_design_worked_example_roi_4(tmp_path: Path) -> None:
    """One post-go-live month: incremental revenue 100,000, CRM cost 20,000 -> ROI 4.

    Baseline = December 2024, which has no deals: baseline revenue_won 0.
    January 2025: one won deal of 100,000 -> incremental revenue 100,000.
    CRM cost: implementation 15,000 + training 5,000 = 20,000 (posted in January,
    so the first ROI row is January). No operating cost, no ARPA: the only
    benefit is revenue. roi = (100,000 - 20,000) / 20,000 = 4; roi_pct 400;
    gross_return_ratio = 100,000 / 20,000 = 5. NPV with one row (k = 0) = 80,000.
    """
    result = run(
        tmp_path,
        deals=[deal("D1", amount="100000", closed_at="2025-01-20T10:00:00Z")],
        finance=[gl("F1", "2025-01-15", "6110", "15000"), gl("F2", "2025-01-16", "6120", "5000")],
    )
    baseline = result["kpi_baseline"][0]
    assert baseline["window_start"] == date(2024, 12, 1)
    assert baseline["window_end"] == date(2025, 1, 1)
    assert baseline["periods"] == 1
    assert baseline["revenue_won"] == 0

    (row,) = result["roi_rolling"]
    assert row["period_start"] == date(2025, 1, 1)
    assert row["incremental_revenue"] == 100_000
    assert row["benefit_revenue"] == 100_000
    assert row["benefit_retention"] == 0
    assert row["benefit_cost_savings"] == 0
    assert row["benefit_total"] == 100_000
    assert row["cost_total"] == 20_000
    assert row["net_benefit"] == 80_000
    assert row["roi"] == pytest.approx(4)
    assert row["roi_pct"] == pytest.approx(400)
    assert row["gross_return_ratio"] == pytest.approx(5)
    assert row["roi_trailing_12m"] == pytest.approx(4)
    assert row["npv_cumulative"] == pytest.approx(80_000)
    assert row["payback_reached"] is True

    summary = result["roi_summary"][0]
    assert summary["as_of"] == date(2025, 1, 31)
    assert summary["go_live"] == date(2025, 1, 1)
    assert summary["periods_since_go_live"] == 1
    assert summary["roi"] == pytest.approx(4)
    assert summary["roi_pct"] == pytest.approx(400)
    assert summary["gross_return_ratio"] == pytest.approx(5)
    assert summary["npv"] == pytest.approx(80_000)
    assert summary["payback_period_months"] == 1

    # The January KPI row behind it.
    jan = by_start(result["kpi_periodic"], date(2025, 1, 1))
    assert jan["phase"] == "post_go_live" and jan["is_complete"] is True
    assert (jan["deals_created"], jan["deals_won"], jan["deals_lost"]) == (1, 1, 0)
    assert jan["win_rate"] == 1 and jan["avg_deal_size"] == 100_000
    # created 2025-01-05, closed 2025-01-20 -> 15 days.
    assert jan["sales_cycle_days_median"] == 15 and jan["sales_cycle_days_mean"] == 15
    assert jan["crm_cost"] == 20_000
    dec = by_start(result["kpi_periodic"], date(2024, 12, 1))
    assert dec["phase"] == "baseline" and dec["win_rate"] is None and dec["revenue_won"] == 0


# --------------------------------------------------------------------------
# Row rules: dedup and rejection
# --------------------------------------------------------------------------


def test_dedup_latest_updated_at_wins_then_validated(tmp_path: Path) -> None:
    """One row per key before validation.

    D1: three versions; updated_at 01-03 is the latest -> amount 200.
    D2: two versions with the same updated_at -> the later row in the file (amount 20).
    D3: no updated_at; version = later of created_at and closed_at: the open row
        (created 01-05, its closed_at ignored) loses to the closed row
        (closed 01-10) even though the open row is later in the file -> amount 30.
    D4: the latest version is invalid (won but not closed) -> rejected, and the
        older valid version does not come back.
    D5: a row with an unparseable updated_at is rejected on its own; the other
        D5 row survives.
    """
    result = run(
        tmp_path,
        deals=[
            deal("D1", amount="100", updated_at="2025-01-02T00:00:00Z"),
            deal("D1", amount="200", updated_at="2025-01-03T00:00:00Z"),
            deal("D1", amount="300", updated_at="2025-01-01T00:00:00Z"),
            deal("D2", amount="10", updated_at="2025-01-04T00:00:00Z"),
            deal("D2", amount="20", updated_at="2025-01-04T00:00:00+00:00"),
            deal("D3", amount="30", updated_at=None, created_at="2025-01-01",
                 closed_at="2025-01-10"),
            deal("D3", amount="40", updated_at=None, created_at="2025-01-05", is_closed="false",
                 is_won="false", closed_at="2025-03-31"),
            deal("D4", amount="50", updated_at="2025-01-05T00:00:00Z"),
            deal("D4", amount="60", updated_at="2025-01-06T00:00:00Z", is_closed="false"),
            deal("D5", amount="70", updated_at="yesterday"),
            deal("D5", amount="80", updated_at="2025-01-01T00:00:00Z"),
        ],
    )  # fmt: skip
    staged = {d["deal_id"]: d for d in result["staging_deals"]}
    assert sorted(staged) == ["D1", "D2", "D3", "D5"]
    assert staged["D1"]["amount"] == 200
    assert staged["D2"]["amount"] == 20
    assert staged["D3"]["amount"] == 30
    assert staged["D3"]["updated_at"] == datetime(2025, 1, 10)  # defaulted
    assert staged["D5"]["amount"] == 80
    assert sorted(rejected_keys(result)) == ["D4", "D5"]


def test_customers_without_updated_at_keep_last_occurrence(tmp_path: Path) -> None:
    """customers.csv has no updated_at: the last occurrence of C1 wins (mrr 20)."""
    result = run(
        tmp_path,
        customers=[
            {"customer_id": "C1", "name": "a", "started_at": "2024-06-01", "churned_at": "",
             "mrr": "10"},
            {"customer_id": "C1", "name": "b", "started_at": "2024-06-01",
             "churned_at": "2025-01-15", "mrr": "20"},
        ],
    )  # fmt: skip
    # The surviving version churned in January: active at the start, churned in P.
    jan = by_start(result["kpi_periodic"], date(2025, 1, 1))
    assert (jan["customers_active_start"], jan["customers_churned"]) == (1, 1)
    assert jan["churn_rate"] == 1 and jan["retention_rate"] == 0


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"deal_id": ""}, "missing deal_id"),
        ({"created_at": ""}, "missing created_at"),
        ({"created_at": "05/01/2025"}, "unparseable created_at"),
        ({"is_closed": ""}, "missing is_closed"),
        ({"is_closed": "maybe"}, "unparseable is_closed"),
        ({"is_won": ""}, "missing is_won"),
        ({"is_won": "won"}, "unparseable is_won"),
        ({"amount": "1,000"}, "unparseable amount"),
        ({"amount": "NaN"}, "NaN does not parse"),
        ({"amount": "inf"}, "inf does not parse"),
        ({"currency": ""}, "amount without currency"),
        ({"currency": "EUR"}, "no EUR rate (no fx file)"),
        ({"closed_at": "2025-01-04T23:00:00Z"}, "closed_at's date before created_at's"),
        ({"closed_at": "2025-01-10T30:00:00Z"}, "unparseable closed_at"),
        ({"closed_at": ""}, "is_closed without closed_at"),
        ({"is_closed": "false"}, "is_won while not is_closed"),
        ({"updated_at": "2025-13-01"}, "unparseable updated_at"),
        ({"is_deleted": "deleted"}, "unparseable is_deleted"),
    ],
)
def test_deal_rejection_reasons(tmp_path: Path, overrides: dict[str, str], why: str) -> None:
    """Each row rule alone rejects the deal; a valid neighbour still loads."""
    bad = {**deal("BAD"), **overrides}
    result = run(tmp_path, deals=[deal("OK"), bad])
    assert [d["deal_id"] for d in result["staging_deals"]] == ["OK"], why
    expected_key = None if overrides.get("deal_id") == "" else "BAD"
    assert rejected_keys(result) == [expected_key], why
    assert result["rejected"][0]["reason"], why
    # Rejected rows are counted nowhere: only OK is won in January.
    assert by_start(result["kpi_periodic"], date(2025, 1, 1))["deals_won"] == 1


def test_deal_rows_that_look_odd_but_are_valid(tmp_path: Path) -> None:
    """Same-day close, open deals' expected close dates, amounts without a value.

    SAME: created 2025-01-05 15:00 UTC, closed as the bare date 2025-01-05 (00:00):
          the UTC dates are equal, so it is valid; cycle 0 days.
    OPEN: open deal with a garbage closed_at: closed_at is not read -> None.
    NOAMT: won deal without an amount: valid; adds 0 to revenue, and does not
          count in avg_deal_size's denominator.
    YES: booleans as yes/no and 1/0, mixed case.
    Revenue = 100 (SAME) + 0 (NOAMT) + 100 (YES) = 200; won with amount = 2 ->
    avg_deal_size 100. Cycles: SAME 0, NOAMT 5, YES 5 -> median 5, mean 10/3.
    """
    result = run(
        tmp_path,
        deals=[
            deal("SAME", created_at="2025-01-05T15:00:00Z", closed_at="2025-01-05"),
            deal("OPEN", is_closed="false", is_won="false", closed_at="someday"),
            deal("NOAMT", amount="", currency=""),
            deal("YES", is_closed="Yes", is_won="1", is_deleted="NO"),
        ],
    )
    staged = {d["deal_id"]: d for d in result["staging_deals"]}
    assert sorted(staged) == ["NOAMT", "OPEN", "SAME", "YES"]
    assert staged["OPEN"]["closed_at"] is None
    assert staged["NOAMT"]["amount_base"] is None
    assert result["rejected"] == []
    jan = by_start(result["kpi_periodic"], date(2025, 1, 1))
    assert (jan["deals_created"], jan["deals_won"]) == (4, 3)
    assert jan["revenue_won"] == 200
    assert jan["avg_deal_size"] == 100
    assert jan["sales_cycle_days_median"] == 5
    assert jan["sales_cycle_days_mean"] == pytest.approx(10 / 3)


def test_fx_rate_on_utc_close_date(tmp_path: Path) -> None:
    """amount_base uses the latest rate on or before the UTC date of closed_at (created_at
    while open).

    EUR rates: 01-01 1.1, 01-08 1.2, 01-11 1.3.
    W: closed 2025-01-10T23:30-05:00 = 2025-01-11T04:30Z -> rate 1.3 -> 130.
    O: open, created 2025-01-05 -> rate 1.1 -> 110.
    E: closed 2024-12-31 (before any EUR rate) -> rejected.
    Lower-case 'eur' finds the same rates.
    """
    result = run(
        tmp_path,
        deals=[
            deal(
                "W", currency="eur", created_at="2025-01-05", closed_at="2025-01-10T23:30:00-05:00"
            ),
            deal("O", currency="EUR", is_closed="false", is_won="false", closed_at=""),
            deal("E", currency="EUR", created_at="2024-12-30", closed_at="2024-12-31"),
        ],
        fx=[
            {"date": "2025-01-01", "currency": "EUR", "rate_to_base": "1.1"},
            {"date": "2025-01-08", "currency": "EUR", "rate_to_base": "1.2"},
            {"date": "2025-01-11", "currency": "EUR", "rate_to_base": "1.3"},
            {"date": "2025-01-12", "currency": "GBP", "rate_to_base": "0"},
        ],
    )
    staged = {d["deal_id"]: d for d in result["staging_deals"]}
    assert staged["W"]["closed_at"] == datetime(2025, 1, 11, 4, 30)
    assert staged["W"]["amount_base"] == pytest.approx(130)
    assert staged["O"]["amount_base"] == pytest.approx(110)
    assert rejected_keys(result) == ["E"]
    assert rejected_keys(result, "fx_rates") == ["2025-01-12|GBP"]


def test_other_tables_reject_their_rows(tmp_path: Path) -> None:
    """Customers, finance, csat and usage rows are quarantined on their own rules."""
    result = run(
        tmp_path,
        customers=[
            {"customer_id": "C1", "started_at": "", "churned_at": "", "mrr": ""},
            {"customer_id": "C2", "started_at": "2024-06-01", "churned_at": "2024-05-01",
             "mrr": ""},
            {"customer_id": "C3", "started_at": "2024-06-01", "churned_at": "", "mrr": "lots"},
            {"customer_id": "C4", "started_at": "2024-06-01", "churned_at": "", "mrr": "-5.5"},
        ],
        finance=[
            gl("F1", "2025-01-15", "", "10"),
            gl("F2", "2025-01-15", "6100", "ten"),
            gl("F3", "2025-01-15", "6100", "10", currency="JPY"),
            gl("F4", "15.01.2025", "6100", "10"),
            gl("F5", "2025-01-15T23:00:00-02:00", "6100", "10"),  # = 2025-01-16 UTC
            gl("F6", "2025-01-15", "9999", "1000"),  # unmapped account: valid, counts nowhere
        ],
        csat=[
            {"response_id": "R1", "customer_id": "C4", "responded_at": "2025-01-10",
             "score": ""},
            {"response_id": "R2", "customer_id": "C4", "responded_at": "2025-01-10",
             "score": "4"},
        ],
        usage=[
            {"period_start": "2025-01-01", "active_users": "many", "licensed_seats": "10"},
            {"period_start": "2025-01-01", "active_users": "8", "licensed_seats": "10"},
        ],
    )  # fmt: skip
    assert rejected_keys(result, "customers") == ["C1", "C2", "C3"]
    assert rejected_keys(result, "finance_gl") == ["F1", "F2", "F3", "F4"]
    assert rejected_keys(result, "csat") == ["R1"]
    assert rejected_keys(result, "crm_usage") == ["2025-01-01"]
    jan = by_start(result["kpi_periodic"], date(2025, 1, 1))
    assert jan["customers_active_start"] == 1  # only C4
    assert jan["crm_cost"] == 10  # only F5
    assert jan["csat_avg"] == 4
    assert jan["adoption_rate"] == pytest.approx(0.8)


# --------------------------------------------------------------------------
# as_of cut-off
# --------------------------------------------------------------------------


def test_as_of_cutoff(tmp_path: Path) -> None:
    """With as_of 2025-01-31 an event counts when its UTC time is before 2025-02-01T00:00Z.

    IN1: closed 2025-01-31T23:59:59Z -> won in January.
    IN2: closed 2025-02-01T00:30+01:00 = 2025-01-31T23:30Z -> won in January.
    OUT: closed 2025-02-01T00:00Z -> open as of as_of (created in January only).
    Customer C1 churned 2025-02-01: still active. Finance line posted 2025-02-01
    does not count. January is complete (period_end 02-01 <= 02-01); with as_of
    2025-01-30 it is not, there is no ROI row, and IN1/IN2 no longer count.
    """
    deals = [
        deal("IN1", closed_at="2025-01-31T23:59:59Z"),
        deal("IN2", closed_at="2025-02-01T00:30:00+01:00"),
        deal("OUT", closed_at="2025-02-01T00:00:00Z"),
    ]
    customers = [
        {"customer_id": "C1", "started_at": "2024-06-01", "churned_at": "2025-02-01", "mrr": ""}
    ]
    finance = [gl("F1", "2025-01-31", "6100", "10"), gl("F2", "2025-02-01", "6100", "1000")]
    result = run(tmp_path, deals=deals, customers=customers, finance=finance)
    jan = by_start(result["kpi_periodic"], date(2025, 1, 1))
    assert [r["period_start"] for r in result["kpi_periodic"]] == [
        date(2024, 12, 1),
        date(2025, 1, 1),
    ]
    assert (jan["deals_created"], jan["deals_won"]) == (3, 2)
    assert (jan["customers_active_start"], jan["customers_churned"]) == (1, 0)
    assert jan["churn_rate"] == 0
    assert jan["crm_cost"] == 10
    assert jan["is_complete"] is True
    assert [r["period_start"] for r in result["roi_rolling"]] == [date(2025, 1, 1)]

    earlier = run(tmp_path, deals=deals, customers=customers, finance=finance,
                  as_of=date(2025, 1, 30))  # fmt: skip
    jan = by_start(earlier["kpi_periodic"], date(2025, 1, 1))
    assert jan["is_complete"] is False
    assert jan["deals_won"] == 0
    assert earlier["roi_rolling"] == []
    assert earlier["roi_summary"][0]["periods_since_go_live"] == 0
    assert earlier["roi_summary"][0]["roi"] is None


def test_deleted_deals_count_nowhere(tmp_path: Path) -> None:
    """A deleted deal stages (is_deleted true) but adds nothing to any KPI."""
    result = run(tmp_path, deals=[deal("D1"), deal("DEL", is_deleted="true", amount="999")])
    assert {d["deal_id"]: d["is_deleted"] for d in result["staging_deals"]} == {
        "D1": False,
        "DEL": True,
    }
    jan = by_start(result["kpi_periodic"], date(2025, 1, 1))
    assert (jan["deals_created"], jan["deals_won"], jan["revenue_won"]) == (1, 1, 100)


# --------------------------------------------------------------------------
# Periods: quarters and weeks
# --------------------------------------------------------------------------


def test_quarter_periods_with_pre_go_live_cost(tmp_path: Path) -> None:
    """Quarterly: go-live 2025-04-01, 6 baseline months -> baseline start 2024-10-01.

    Periods: Q4 2024, Q1 2025 (baseline), Q2 2025 (post go-live, holds as_of 06-30).
    Won revenue: Q4 30,000, Q1 50,000 -> baseline mean 40,000. Q2 70,000 ->
    incremental 30,000 x margin 0.5 = benefit 15,000.
    CRM cost: 10,000 on 2025-03-15 (Q1, pre go-live) and 5,000 on 2025-05-01 (Q2);
    so roi.rolling starts at Q1 2025:
      Q1: benefit 0, cost 10,000, net -10,000; cumulative 0 / 10,000 -> roi -1.
      Q2: benefit 15,000, cost 5,000, net 10,000; cumulative 15,000 / 15,000 ->
          roi 0, gross 1, payback reached (>=).
    payback_period_months = 1 row from go-live x 3 months = 3.
    NPV: -10,000 + 10,000 / 1.1 ** (1 x 3/12).
    """
    result = run(
        tmp_path,
        deals=[
            deal("Q4", amount="30000", created_at="2024-11-01", closed_at="2024-11-20"),
            deal("Q1", amount="50000", created_at="2025-02-01", closed_at="2025-02-11"),
            deal("Q2", amount="70000", created_at="2025-04-02", closed_at="2025-05-02"),
        ],
        finance=[gl("F1", "2025-03-15", "6110", "10000"), gl("F2", "2025-05-01", "6100", "5000")],
        period="quarter",
        go_live=date(2025, 4, 1),
        baseline_months=6,
        as_of=date(2025, 6, 30),
        gross_margin=0.5,
    )
    periodic = result["kpi_periodic"]
    assert [(r["period_start"], r["period_end"], r["phase"]) for r in periodic] == [
        (date(2024, 10, 1), date(2025, 1, 1), "baseline"),
        (date(2025, 1, 1), date(2025, 4, 1), "baseline"),
        (date(2025, 4, 1), date(2025, 7, 1), "post_go_live"),
    ]
    baseline = result["kpi_baseline"][0]
    assert (baseline["window_start"], baseline["window_end"], baseline["periods"]) == (
        date(2024, 10, 1),
        date(2025, 4, 1),
        2,
    )
    assert baseline["revenue_won"] == 40_000
    assert baseline["deals_won"] == 1.0
    assert baseline["avg_deal_size"] == 40_000
    # Cycles 19 and 10 days -> median (interpolated) and mean 14.5.
    assert baseline["sales_cycle_days_median"] == 14.5

    q1, q2 = result["roi_rolling"]
    assert q1["period_start"] == date(2025, 1, 1)
    assert (q1["incremental_revenue"], q1["benefit_total"], q1["cost_total"]) == (0, 0, 10_000)
    assert q1["roi"] == -1 and q1["payback_reached"] is False
    assert q2["incremental_revenue"] == 30_000
    assert q2["benefit_revenue"] == 15_000
    assert q2["cumulative_benefit"] == 15_000 and q2["cumulative_cost"] == 15_000
    assert q2["roi"] == 0 and q2["gross_return_ratio"] == 1
    assert q2["payback_reached"] is True
    assert q2["npv_cumulative"] == pytest.approx(-10_000 + 10_000 / 1.1**0.25)
    summary = result["roi_summary"][0]
    assert summary["payback_period_months"] == 3
    assert summary["periods_since_go_live"] == 1


def test_week_periods_are_iso_weeks(tmp_path: Path) -> None:
    """Weekly: periods start on Mondays; as_of Wed 2025-01-08 lies in the week of 01-06.

    go_live Wed 2025-01-01 - 1 month = 2024-12-01 (a Sunday) -> first week Mon 2024-11-25.
    The week of 2024-12-30 holds go-live but starts before it: phase 'baseline'.
    """
    result = run(tmp_path, deals=[deal("D1")], period="week", as_of=date(2025, 1, 8))
    starts = [r["period_start"] for r in result["kpi_periodic"]]
    assert starts[0] == date(2024, 11, 25) and starts[-1] == date(2025, 1, 6)
    assert all(s.weekday() == 0 for s in starts)
    assert by_start(result["kpi_periodic"], date(2024, 12, 30))["phase"] == "baseline"
    assert by_start(result["kpi_periodic"], date(2025, 1, 6))["is_complete"] is False
    # Baseline weeks wholly inside [2024-12-01, 2025-01-01): 12-02 ... 12-23.
    baseline = result["kpi_baseline"][0]
    assert (baseline["window_start"], baseline["window_end"], baseline["periods"]) == (
        date(2024, 12, 2),
        date(2024, 12, 30),
        4,
    )


# --------------------------------------------------------------------------
# NPV, retention benefit, trailing ROI
# --------------------------------------------------------------------------


def test_npv_two_rows(tmp_path: Path) -> None:
    """Two monthly ROI rows discounted at 10% a year.

    January: CRM cost 12,000, no benefit -> net -12,000 (k = 0, factor 1).
    February: won deal 24,000 over a zero baseline, no cost -> net 24,000
    (k = 1, factor 1.1 ** (1/12) ~ 1.0079741).
    npv = -12,000 + 24,000 / 1.0079741 ~ -12,000 + 23,810.13 = 11,810.13.
    Cumulative 24,000 / 12,000 -> roi 1; payback first reached in February,
    the 2nd row from go-live -> 2 months.
    """
    result = run(
        tmp_path,
        deals=[deal("D1", amount="24000", created_at="2025-02-01", closed_at="2025-02-10")],
        finance=[gl("F1", "2025-01-05", "6100", "12000")],
        as_of=date(2025, 2, 28),
    )
    jan, feb = result["roi_rolling"]
    assert jan["npv_cumulative"] == pytest.approx(-12_000)
    assert feb["npv_cumulative"] == pytest.approx(-12_000 + 24_000 / 1.1 ** (1 / 12))
    assert feb["npv_cumulative"] == pytest.approx(11_810.13, abs=0.01)
    assert feb["roi"] == pytest.approx(1)
    assert (jan["payback_reached"], feb["payback_reached"]) == (False, True)
    assert result["roi_summary"][0]["payback_period_months"] == 2
    assert result["roi_summary"][0]["npv"] == feb["npv_cumulative"]


def test_retention_benefit_and_pooled_baseline(tmp_path: Path) -> None:
    """Churn baseline pooled over two months, retention benefit with ARPA.

    Four customers started 2024-10-01. Baseline = Nov + Dec 2024:
      Nov: active 4, C1 churns -> 1;  Dec: active 3, C2 churns -> 1.
      pooled churn = 2 / 7; retention 5/7; active_start mean 3.5; churned mean 1.
    January: active 2, nobody churns -> churn 0.
      customers saved = (2/7 - 0) x 2 = 4/7.
      benefit_retention = 4/7 x ARPA 100 x 1 month x margin 0.5 x attribution 0.5
                        = 14.2857...; benefit_total = x (1 - risk 0.2) = 11.4286.
    Operating cost: baseline mean (300 + 100) / 2 = 200; January 150 ->
      savings (200 - 150) x attribution 0.5 = 25 -> benefit_total (14.2857 + 25) x 0.8.
    """
    customers = [
        {"customer_id": f"C{i}", "started_at": "2024-10-01", "churned_at": churn, "mrr": ""}
        for i, churn in [(1, "2024-11-15"), (2, "2024-12-15"), (3, ""), (4, "")]
    ]
    result = run(
        tmp_path,
        customers=customers,
        finance=[
            gl("F1", "2024-11-05", "6300", "300"),
            gl("F2", "2024-12-05", "6300", "100"),
            gl("F3", "2025-01-05", "6300", "150"),
            gl("F4", "2025-01-02", "6130", "10"),
        ],
        baseline_months=2,
        arpa_monthly=100.0,
        gross_margin=0.5,
        attribution_share=0.5,
        risk_adjustment=0.2,
    )
    baseline = result["kpi_baseline"][0]
    assert baseline["periods"] == 2
    assert baseline["customers_active_start"] == 3.5
    assert baseline["customers_churned"] == 1
    assert baseline["churn_rate"] == pytest.approx(2 / 7)
    assert baseline["retention_rate"] == pytest.approx(5 / 7)
    assert baseline["operating_cost"] == 200

    (jan,) = result["roi_rolling"]
    retention = 4 / 7 * 100 * 1 * 0.5 * 0.5
    assert jan["benefit_retention"] == pytest.approx(retention)
    assert jan["benefit_cost_savings"] == pytest.approx(25)
    assert jan["benefit_revenue"] == 0
    assert jan["benefit_total"] == pytest.approx((retention + 25) * 0.8)
    assert jan["cost_total"] == 10


def test_trailing_12m_drops_old_rows(tmp_path: Path) -> None:
    """roi_trailing_12m covers rows with period_start > P's start - 12 months.

    CRM hardware 1,000 posted 2024-01-10 starts roi.rolling at January 2024,
    before the baseline start (December 2024), so that row's cost comes straight
    from the GL. January 2025: a won deal of 1,000 over a zero baseline ->
    benefit 1,000; CRM software 500 posted 2025-01-10.
      Dec 2024 trailing window = Jan 2024 .. Dec 2024: (0 - 1,000) / 1,000 = -1.
      Jan 2025 trailing window = Feb 2024 .. Jan 2025: (1,000 - 500) / 500 = 1.
      Jan 2025 cumulative: (1,000 - 1,500) / 1,500 = -1/3; gross 2/3.
    Payback is never reached -> payback_period_months None.
    """
    result = run(
        tmp_path,
        deals=[deal("D1", amount="1000")],
        finance=[gl("F1", "2024-01-10", "6140", "1000"), gl("F2", "2025-01-10", "6100", "500")],
    )
    rows = result["roi_rolling"]
    assert rows[0]["period_start"] == date(2024, 1, 1)
    assert len(rows) == 13
    assert rows[0]["cost_total"] == 1000 and rows[-1]["cost_total"] == 500
    assert all(r["benefit_total"] == 0 for r in rows[:-1])
    assert rows[-2]["roi_trailing_12m"] == -1
    assert rows[-1]["roi_trailing_12m"] == pytest.approx(1)
    assert rows[-1]["cumulative_cost"] == 1500
    assert rows[-1]["roi"] == pytest.approx(-1 / 3)
    assert rows[-1]["gross_return_ratio"] == pytest.approx(2 / 3)
    assert result["roi_summary"][0]["payback_period_months"] is None
    assert result["roi_summary"][0]["periods_since_go_live"] == 1


def test_parse_timestamp_offsets() -> None:
    """Offsets are honoured and stored as naive UTC; a bare date is midnight UTC."""
    assert parse_timestamp("2025-01-01") == datetime(2025, 1, 1)
    assert parse_timestamp("2025-01-01T10:00:00Z") == datetime(2025, 1, 1, 10)
    assert parse_timestamp("2025-01-01T10:00:00+02:00") == datetime(2025, 1, 1, 8)
    assert parse_timestamp("2025-01-01 01:00-0130") == datetime(2025, 1, 1, 2, 30)
    assert parse_timestamp("2025-01-01T00:00:00.123456789Z") == datetime(
        2025, 1, 1, 0, 0, 0, 123456
    )
    for bad in ["2025-02-30", "01/01/2025", "2025-01-01T25:00:00Z", "yesterday"]:
        with pytest.raises(ValueError):
            parse_timestamp(bad)
