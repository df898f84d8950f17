"""KPI definitions (docs/tables.md), hand-worked on a few rows.

Each test writes a tiny canonical export through the `project` fixture (real
SQL models, real DuckDB file) and checks kpi.periodic, kpi.baseline or
kpi.vs_baseline against numbers worked out in the comments. Defaults: as_of
2025-03-31, go-live 2025-01-01, 12 baseline months, monthly periods.
"""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.models import KPI_COLUMNS
from tests.conftest import deal, gl, rows

CUSTOMER_COLUMNS = ["customer_id", "name", "started_at", "churned_at", "mrr"]
CSAT_COLUMNS = ["response_id", "customer_id", "responded_at", "score"]
USAGE_COLUMNS = ["period_start", "active_users", "licensed_seats"]


def period(con, start: str) -> dict:
    (row,) = rows(
        con, "SELECT * FROM kpi.periodic WHERE period_start = ?", [dt.date.fromisoformat(start)]
    )
    return row


def baseline(con) -> dict:
    (row,) = rows(con, "SELECT * FROM kpi.baseline")
    return row


def customers(*specs: tuple[str, str, str]) -> dict:
    """customers.csv from (customer_id, started_at, churned_at) triples."""
    return {"customers": (CUSTOMER_COLUMNS, [[cid, f"Customer {cid}", start, churn, "100"]
                                             for cid, start, churn in specs])}


# --- deals ------------------------------------------------------------------------


def test_deals_created_won_and_lost_count_in_the_period_of_their_own_event(project):
    # D1 created Jan 3, open.            -> Jan created
    # D2 created Jan 5, won Jan 20.      -> Jan created, Jan won
    # D3 created Dec 10, lost Jan 15.    -> Dec created, Jan lost
    # D4 created Jan 7, won Feb 2.       -> Jan created, Feb won
    con = project(deals=[
        deal("D1", "2025-01-03"),
        deal("D2", "2025-01-05", "2025-01-20", won=True),
        deal("D3", "2024-12-10", "2025-01-15", won=False),
        deal("D4", "2025-01-07", "2025-02-02", won=True),
    ])
    counts = {
        p: (r["deals_created"], r["deals_won"], r["deals_lost"])
        for p in ("2024-12-01", "2025-01-01", "2025-02-01", "2025-03-01")
        for r in [period(con, p)]
    }
    assert counts == {
        "2024-12-01": (1, 0, 0),
        "2025-01-01": (3, 1, 1),
        "2025-02-01": (0, 1, 0),
        "2025-03-01": (0, 0, 0),
    }


def test_win_rate_is_won_over_closed_and_null_when_nothing_closed(project):
    # January: 2 won, 1 lost -> 2/3. February: one deal created, none closed -> null.
    con = project(deals=[
        deal("W1", "2025-01-02", "2025-01-10", won=True),
        deal("W2", "2025-01-03", "2025-01-11", won=True),
        deal("L1", "2025-01-04", "2025-01-12", won=False),
        deal("O1", "2025-02-04"),
    ])
    assert period(con, "2025-01-01")["win_rate"] == pytest.approx(2 / 3)
    feb = period(con, "2025-02-01")
    assert feb["deals_created"] == 1
    assert feb["win_rate"] is None


REVENUE_DEALS = [
    deal("W1", "2025-01-02", "2025-01-10", won=True, amount="1000"),
    deal("W2", "2025-01-03", "2025-01-11", won=True, amount="2,500.50"),
    deal("W3", "2025-01-04", "2025-01-12", won=True, amount=""),  # null amount
    deal("L1", "2025-01-05", "2025-01-13", won=False, amount="9999"),
]


def test_revenue_won_sums_won_amounts_and_a_null_amount_adds_zero(project):
    # 1000 + 2500.50 + (null -> 0) = 3500.50; the lost 9999 does not count.
    con = project(deals=REVENUE_DEALS)
    jan = period(con, "2025-01-01")
    assert jan["deals_won"] == 3
    assert jan["revenue_won"] == pytest.approx(3500.5)
    assert period(con, "2025-02-01")["revenue_won"] == 0


def test_avg_deal_size_is_over_won_deals_with_an_amount(project):
    # 3500.50 / 2 won deals with an amount = 1750.25 (not / 3 won deals = 1166.83).
    con = project(deals=REVENUE_DEALS)
    assert period(con, "2025-01-01")["avg_deal_size"] == pytest.approx(1750.25)
    assert period(con, "2025-02-01")["avg_deal_size"] is None  # nothing won


def test_sales_cycle_median_interpolated_and_mean_over_won_deals(project):
    # Won in January, calendar days from created date to closed date:
    #   A: 2025-01-01 23:00 -> 2025-01-03 01:00   = 2 (26 hours, but 2 calendar days)
    #   B: 2024-12-28       -> 2025-01-01         = 4
    #   C: 2025-01-05       -> 2025-01-15         = 10
    #   D: 2024-12-20       -> 2025-01-19         = 30
    #   lost E: 2024-10-01 -> 2025-01-09 (100 days) does not count.
    # sorted 2, 4, 10, 30: median = (4 + 10) / 2 = 7 ; mean = 46 / 4 = 11.5
    con = project(deals=[
        deal("A", "2025-01-01T23:00:00Z", "2025-01-03T01:00:00Z", won=True),
        deal("B", "2024-12-28", "2025-01-01", won=True),
        deal("C", "2025-01-05", "2025-01-15", won=True),
        deal("D", "2024-12-20", "2025-01-19", won=True),
        deal("E", "2024-10-01", "2025-01-09", won=False),
    ])
    jan = period(con, "2025-01-01")
    assert jan["sales_cycle_days_median"] == pytest.approx(7.0)
    assert jan["sales_cycle_days_mean"] == pytest.approx(11.5)
    assert period(con, "2025-02-01")["sales_cycle_days_median"] is None


# --- customers --------------------------------------------------------------------

CUSTOMERS = customers(
    ("C1", "2024-06-01", ""),
    ("C2", "2024-07-01", "2025-02-10"),
    ("C3", "2024-08-01", "2025-01-15"),
    ("C4", "2025-02-05", ""),
    ("C5", "2025-02-03", "2025-02-20"),           # new and churned within February
    ("C6", "2025-03-01T00:30:00+01:00", ""),      # = 2025-02-28 23:30 UTC: new in February
)


def test_customers_active_start_new_and_churned(project):
    # January:  active at start C1 C2 C3 = 3; new 0; churned C3 = 1.
    # February: active at start C1 C2 = 2 (C3 churned in Jan); new C4 C5 C6 = 3;
    #           churned C2 = 1 (C5 churned too, but was not active at the start).
    # March:    active at start C1 C4 C6 = 3; new 0; churned 0.
    con = project(files=CUSTOMERS)
    flows = {
        p: (r["customers_active_start"], r["customers_new"], r["customers_churned"])
        for p in ("2024-06-01", "2024-07-01", "2025-01-01", "2025-02-01", "2025-03-01")
        for r in [period(con, p)]
    }
    assert flows == {
        "2024-06-01": (0, 1, 0),
        "2024-07-01": (1, 1, 0),
        "2025-01-01": (3, 0, 1),
        "2025-02-01": (2, 3, 1),
        "2025-03-01": (3, 0, 0),
    }


def test_churn_rate_and_retention_rate(project):
    # January 1/3 churned -> churn 1/3, retention 2/3; February 1/2 -> 0.5, 0.5;
    # March 0/3 -> churn 0, retention 1.
    con = project(files=CUSTOMERS)
    rates = {p: (period(con, p)["churn_rate"], period(con, p)["retention_rate"])
             for p in ("2025-01-01", "2025-02-01", "2025-03-01")}
    assert rates == {
        "2025-01-01": (pytest.approx(1 / 3), pytest.approx(2 / 3)),
        "2025-02-01": (pytest.approx(0.5), pytest.approx(0.5)),
        "2025-03-01": (pytest.approx(0.0), pytest.approx(1.0)),
    }


def test_churn_rate_is_null_when_no_customer_is_active_at_the_start(project):
    # June 2024: C1 starts, nobody active at the start -> churn and retention null.
    con = project(files=CUSTOMERS)
    june = period(con, "2024-06-01")
    assert june["customers_active_start"] == 0
    assert june["churn_rate"] is None
    assert june["retention_rate"] is None


def test_cac_is_spend_over_new_customers_and_null_without_new_customers(project):
    # February: sales & marketing 3000 + 1,500 = 4500 over 3 new customers = 1500.
    # January: spend 800 but no new customer -> cac null.
    con = project(
        files=CUSTOMERS,
        finance=[
            gl("S1", "2025-02-03", "6200", "3000"),
            gl("S2", "2025-02-20", "6200", "1,500"),
            gl("S3", "2025-01-10", "6200", "800"),
        ],
    )
    feb, jan = period(con, "2025-02-01"), period(con, "2025-01-01")
    assert feb["sales_marketing_spend"] == pytest.approx(4500.0)
    assert feb["cac"] == pytest.approx(1500.0)
    assert jan["sales_marketing_spend"] == pytest.approx(800.0)
    assert jan["cac"] is None


# --- finance, csat, usage ---------------------------------------------------------


def test_costs_by_mapped_category_and_unmapped_account_counts_nowhere(project):
    # January: crm_* = 1000 + 2000 + 300 + 40 + 5 = 3345 ; sales_marketing 700 ;
    # operating 800 + (100) = 700 ; account 9999 (50,000) is unmapped and counts nowhere.
    con = project(finance=[
        gl("G1", "2025-01-02", "6100", "1000"),
        gl("G2", "2025-01-03", "6110", "2000"),
        gl("G3", "2025-01-04", "6120", "300"),
        gl("G4", "2025-01-05", "6130", "40"),
        gl("G5", "2025-01-06", "6140", "5"),
        gl("G6", "2025-01-07", "6200", "700"),
        gl("G7", "2025-01-08", "6300", "800"),
        gl("G8", "2025-01-09", "6300", "(100)"),
        gl("G9", "2025-01-10", "9999", "50000"),
    ])
    jan = period(con, "2025-01-01")
    assert jan["crm_cost"] == pytest.approx(3345.0)
    assert jan["sales_marketing_spend"] == pytest.approx(700.0)
    assert jan["operating_cost"] == pytest.approx(700.0)
    (unmapped,) = rows(con, "SELECT category FROM staging.finance_gl WHERE entry_id = 'G9'")
    assert unmapped["category"] is None
    total = con.execute(
        "SELECT sum(crm_cost + sales_marketing_spend + operating_cost) FROM kpi.periodic"
    ).fetchone()[0]
    assert total == pytest.approx(3345 + 700 + 700)


def test_csat_avg_is_the_mean_score_in_the_period(project):
    # January: 4, 5, 3 -> 4.0. '2025-02-28T23:30:00-01:00' is 2025-03-01 00:30 UTC -> March (2.0).
    # February: no response -> null.
    con = project(files={"csat": (CSAT_COLUMNS, [
        ["R1", "C1", "2025-01-05", "4"],
        ["R2", "C1", "2025-01-15", "5"],
        ["R3", "C2", "2025-01-25T12:00:00Z", "3"],
        ["R4", "C2", "2025-02-28T23:30:00-01:00", "2"],
    ])})
    assert period(con, "2025-01-01")["csat_avg"] == pytest.approx(4.0)
    assert period(con, "2025-02-01")["csat_avg"] is None
    assert period(con, "2025-03-01")["csat_avg"] == pytest.approx(2.0)


def test_adoption_rate_is_active_users_over_licensed_seats(project):
    # January 30 / 40 = 0.75 ; March 45 / 50 = 0.9 ; February has no usage row -> null.
    con = project(files={"crm_usage": (USAGE_COLUMNS, [
        ["2025-01-01", "30", "40"],
        ["2025-03-01", "45", "50"],
    ])})
    assert period(con, "2025-01-01")["adoption_rate"] == pytest.approx(0.75)
    assert period(con, "2025-02-01")["adoption_rate"] is None
    assert period(con, "2025-03-01")["adoption_rate"] == pytest.approx(0.9)


# --- as_of cut-off ----------------------------------------------------------------


def test_deal_closed_after_as_of_is_still_open(project):
    # as_of 2025-03-15: cut-off 2025-03-16 00:00 UTC.
    #   A won 2025-03-16                              -> open as of as_of (created counts)
    #   B won 2025-03-15T23:59:59Z                    -> counts
    #   D won '2025-03-15T23:30:00-01:00' = 03-16 00:30 UTC -> open
    #   C created 2025-03-16                          -> not created yet
    con = project(
        deals=[
            deal("A", "2025-03-01", "2025-03-16", won=True, amount="5000"),
            deal("B", "2025-03-02", "2025-03-15T23:59:59Z", won=True, amount="1000"),
            deal("D", "2025-03-03", "2025-03-15T23:30:00-01:00", won=True, amount="7000"),
            deal("C", "2025-03-16T00:00:00Z"),
        ],
        as_of="2025-03-15",
    )
    mar = period(con, "2025-03-01")
    assert mar["deals_created"] == 3  # A, B, D
    assert mar["deals_won"] == 1  # B
    assert mar["revenue_won"] == pytest.approx(1000.0)


def test_customer_churned_after_as_of_is_still_active(project):
    # as_of 2025-03-15. X churns 2025-03-20 (after): not churned in March.
    # Y starts 2025-03-20 (after): not new in March. Z churns 2025-03-10: churned.
    con = project(
        files=customers(
            ("X", "2024-01-01", "2025-03-20"),
            ("Y", "2025-03-20", ""),
            ("Z", "2024-01-01", "2025-03-10"),
        ),
        as_of="2025-03-15",
    )
    mar = period(con, "2025-03-01")
    assert (mar["customers_active_start"], mar["customers_new"], mar["customers_churned"]) == (
        2, 0, 1)
    assert mar["churn_rate"] == pytest.approx(0.5)


def test_gl_line_posted_after_as_of_is_ignored(project):
    # as_of 2025-03-15: the line of 03-15 counts (100), the one of 03-16 (900) does not.
    con = project(
        finance=[gl("G1", "2025-03-15", "6200", "100"), gl("G2", "2025-03-16", "6200", "900"),
                 gl("G3", "2025-03-16", "6100", "900")],
        as_of="2025-03-15",
    )
    mar = period(con, "2025-03-01")
    assert mar["sales_marketing_spend"] == pytest.approx(100.0)
    assert mar["crm_cost"] == 0


def test_period_holding_a_mid_month_as_of_is_incomplete(project):
    con = project(as_of="2025-03-15")
    flags = [(r["period_start"], r["period_end"], r["is_complete"]) for r in rows(
        con, "SELECT * FROM kpi.periodic WHERE period_start >= '2025-02-01' ORDER BY 1")]
    assert flags == [
        (dt.date(2025, 2, 1), dt.date(2025, 3, 1), True),
        (dt.date(2025, 3, 1), dt.date(2025, 4, 1), False),
    ]


def test_period_ending_on_as_of_is_complete(project):
    # as_of 2025-03-31: March ends 2025-04-01 = as_of + 1 day -> complete.
    con = project()
    assert period(con, "2025-03-01")["is_complete"] is True


# --- period lengths ---------------------------------------------------------------


def test_monthly_periods_run_from_baseline_start_to_the_month_of_as_of(project):
    # baseline start 2024-01-01 .. March 2025 = 15 months; phase flips at go-live.
    con = project()
    periods = rows(con, "SELECT period_start, period_end, phase FROM kpi.periodic ORDER BY 1")
    assert len(periods) == 15
    assert periods[0] == {"period_start": dt.date(2024, 1, 1), "period_end": dt.date(2024, 2, 1),
                          "phase": "baseline"}
    assert periods[11]["phase"] == "baseline"  # December 2024
    assert periods[12] == {"period_start": dt.date(2025, 1, 1),
                           "period_end": dt.date(2025, 2, 1), "phase": "post_go_live"}
    assert periods[-1]["period_end"] == dt.date(2025, 4, 1)


def test_quarterly_periods_are_calendar_quarters(project):
    # 2024-Q1 .. 2025-Q1. Won 2024-05-15 and 2024-06-30 -> Q2; won 2024-07-01 -> Q3.
    con = project(
        deals=[
            deal("A", "2024-05-01", "2024-05-15", won=True),
            deal("B", "2024-05-01", "2024-06-30T23:00:00Z", won=True),
            deal("C", "2024-05-01", "2024-07-01", won=True),
        ],
        period="quarter",
    )
    got = [(r["period_start"], r["period_end"], r["deals_won"]) for r in rows(
        con, "SELECT * FROM kpi.periodic ORDER BY period_start")]
    assert got == [
        (dt.date(2024, 1, 1), dt.date(2024, 4, 1), 0),
        (dt.date(2024, 4, 1), dt.date(2024, 7, 1), 2),
        (dt.date(2024, 7, 1), dt.date(2024, 10, 1), 1),
        (dt.date(2024, 10, 1), dt.date(2025, 1, 1), 0),
        (dt.date(2025, 1, 1), dt.date(2025, 4, 1), 0),
    ]


def test_weekly_periods_are_iso_weeks_starting_monday(project):
    # 2025-02-16 is a Sunday: it belongs to the week starting Monday 2025-02-10.
    # '2025-02-16T23:30:00-01:00' = Monday 2025-02-17 00:30 UTC: the next week.
    # go-live Monday 2025-01-06, 12 baseline months -> baseline start Saturday 2024-01-06,
    # so the first period is the week holding it, Monday 2024-01-01.
    con = project(
        deals=[
            deal("S", "2025-02-16"),
            deal("N", "2025-02-16T23:30:00-01:00"),
        ],
        period="week", go_live="2025-01-06",
    )
    weeks = {r["period_start"]: r for r in rows(con, "SELECT * FROM kpi.periodic")}
    first = min(weeks)
    assert first == dt.date(2024, 1, 1)
    assert weeks[dt.date(2025, 2, 10)]["period_end"] == dt.date(2025, 2, 17)
    assert weeks[dt.date(2025, 2, 10)]["deals_created"] == 1
    assert weeks[dt.date(2025, 2, 17)]["deals_created"] == 1
    assert all(d.isoweekday() == 1 for d in weeks)
    # Last week holds as_of Monday 2025-03-31 = 2024-01-01 + 455 days (65 x 7),
    # so weeks 0 .. 65: 66 periods.
    assert max(weeks) == dt.date(2025, 3, 31)
    assert len(weeks) == 66
    # Baseline: weeks wholly inside [2024-01-06, 2025-01-06): 2024-01-08 .. 2024-12-30.
    b = baseline(con)
    assert (b["window_start"], b["window_end"], b["periods"]) == (
        dt.date(2024, 1, 8), dt.date(2025, 1, 6), 52)


# --- kpi.baseline -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("months", "window_start", "periods", "revenue_mean"),
    [
        # Oct 300 + Nov 600 + Dec 0 over 3 periods = 300 (the Sep 500 is outside).
        (3, dt.date(2024, 10, 1), 3, 300.0),
        # Sep 500 + Oct 300 + Nov 600 over 12 periods = 1400 / 12.
        (12, dt.date(2024, 1, 1), 12, 1400 / 12),
    ],
)
def test_baseline_flows_are_means_per_period_over_the_window(
    project, months, window_start, periods, revenue_mean
):
    con = project(
        deals=[
            deal("S", "2024-09-01", "2024-09-10", won=True, amount="500"),
            deal("O", "2024-10-01", "2024-10-10", won=True, amount="300"),
            deal("N", "2024-11-01", "2024-11-10", won=True, amount="600"),
            deal("J", "2025-01-01", "2025-01-10", won=True, amount="9000"),  # after go-live
        ],
        baseline_months=months,
    )
    b = baseline(con)
    assert (b["window_start"], b["window_end"], b["periods"]) == (
        window_start, dt.date(2025, 1, 1), periods)
    assert b["revenue_won"] == pytest.approx(revenue_mean)
    won_in_window = 3 if months == 12 else 2
    assert b["deals_won"] == pytest.approx(won_in_window / periods)
    assert b["deals_created"] == pytest.approx(won_in_window / periods)


def test_baseline_win_rate_is_pooled_not_a_mean_of_monthly_rates(project):
    # Window Oct-Dec 2024. Oct: 1 won, 0 lost (rate 1). Nov: 1 won, 3 lost (0.25). Dec: none.
    # Mean of monthly rates = 0.625; pooled = 2 / 5 = 0.4.
    con = project(
        deals=[
            deal("O1", "2024-10-01", "2024-10-10", won=True),
            deal("N1", "2024-11-01", "2024-11-10", won=True),
            deal("N2", "2024-11-01", "2024-11-11", won=False),
            deal("N3", "2024-11-01", "2024-11-12", won=False),
            deal("N4", "2024-11-01", "2024-11-13", won=False),
        ],
        baseline_months=3,
    )
    b = baseline(con)
    assert b["win_rate"] == pytest.approx(0.4)
    assert b["deals_lost"] == pytest.approx(1.0)  # 3 lost / 3 periods


def test_baseline_churn_rate_is_pooled_and_active_start_is_a_mean(project):
    # 10 customers from 2024-01-01. Window Oct-Dec 2024.
    # Oct: active 10, churned 1 (0.10). Nov: active 9, churned 3 (0.33). Dec: active 6, 0.
    # Pooled churn = 4 / 25 = 0.16 (mean of rates would be 0.1444); retention 0.84.
    # Mean active start = 25 / 3; mean churned = 4 / 3.
    specs = [(f"C{i}", "2024-01-01", "") for i in range(5, 11)]
    con = project(
        files=customers(
            ("C1", "2024-01-01", "2024-10-15"),
            ("C2", "2024-01-01", "2024-11-10"),
            ("C3", "2024-01-01", "2024-11-11"),
            ("C4", "2024-01-01", "2024-11-12"),
            *specs,
        ),
        baseline_months=3,
    )
    b = baseline(con)
    assert b["churn_rate"] == pytest.approx(0.16)
    assert b["retention_rate"] == pytest.approx(0.84)
    assert b["customers_active_start"] == pytest.approx(25 / 3)
    assert b["customers_churned"] == pytest.approx(4 / 3)


def test_baseline_cac_is_pooled_spend_over_pooled_new_customers(project):
    # Oct: spend 1000, 1 new (cac 1000). Nov: spend 1000, 4 new (250). Dec: spend 1000, 0 new.
    # Pooled = 3000 / 5 = 600 (mean of the defined monthly cac would be 625).
    con = project(
        files=customers(
            ("A", "2024-10-05", ""),
            ("B", "2024-11-05", ""), ("C", "2024-11-06", ""),
            ("D", "2024-11-07", ""), ("E", "2024-11-08", ""),
        ),
        finance=[gl("S1", "2024-10-01", "6200", "1000"), gl("S2", "2024-11-01", "6200", "1000"),
                 gl("S3", "2024-12-01", "6200", "1000")],
        baseline_months=3,
    )
    b = baseline(con)
    assert b["cac"] == pytest.approx(600.0)
    assert b["sales_marketing_spend"] == pytest.approx(1000.0)
    assert b["customers_new"] == pytest.approx(5 / 3)


def test_baseline_avg_deal_size_and_cycle_pool_all_won_deals_in_the_window(project):
    # Oct: won 100 (cycle 2). Nov: won 300 (4), 500 (6), and one with no amount (20).
    # avg_deal_size = 900 / 3 with an amount = 300 (mean of monthly averages = 250).
    # cycle over 2, 4, 6, 20: median (4 + 6) / 2 = 5 ; mean 32 / 4 = 8.
    con = project(
        deals=[
            deal("O1", "2024-10-01", "2024-10-03", won=True, amount="100"),
            deal("N1", "2024-11-01", "2024-11-05", won=True, amount="300"),
            deal("N2", "2024-11-01", "2024-11-07", won=True, amount="500"),
            deal("N3", "2024-11-01", "2024-11-21", won=True, amount=""),
        ],
        baseline_months=3,
    )
    b = baseline(con)
    assert b["avg_deal_size"] == pytest.approx(300.0)
    assert b["sales_cycle_days_median"] == pytest.approx(5.0)
    assert b["sales_cycle_days_mean"] == pytest.approx(8.0)


def test_baseline_csat_is_the_mean_of_all_responses_in_the_window(project):
    # Oct: 5. Nov: 1, 1, 1. All responses: 8 / 4 = 2 (mean of monthly means = 3).
    # Sep (outside the 3-month window): 5, ignored.
    con = project(
        files={"csat": (CSAT_COLUMNS, [
            ["R0", "C1", "2024-09-05", "5"],
            ["R1", "C1", "2024-10-05", "5"],
            ["R2", "C1", "2024-11-05", "1"],
            ["R3", "C2", "2024-11-06", "1"],
            ["R4", "C3", "2024-11-07", "1"],
        ])},
        baseline_months=3,
    )
    assert baseline(con)["csat_avg"] == pytest.approx(2.0)


def test_baseline_adoption_rate_is_pooled_and_null_without_usage(project):
    # Oct 10 / 100, Nov 45 / 50: pooled 55 / 150 = 0.3667 (mean of rates = 0.5).
    con = project(
        files={"crm_usage": (USAGE_COLUMNS, [["2024-10-01", "10", "100"],
                                             ["2024-11-01", "45", "50"]])},
        baseline_months=3,
    )
    assert baseline(con)["adoption_rate"] == pytest.approx(55 / 150)


def test_baseline_adoption_rate_is_null_without_usage_rows(project):
    con = project(baseline_months=3)
    assert baseline(con)["adoption_rate"] is None


# --- kpi.vs_baseline --------------------------------------------------------------


def test_vs_baseline_delta_and_delta_pct(project):
    # Window Oct-Dec 2024: revenue 100, 200, 300 -> baseline 200.
    # January: revenue 500 -> delta 300, delta_pct 1.5. February: 0 -> -200, -1.0.
    con = project(
        deals=[
            deal("O", "2024-10-01", "2024-10-10", won=True, amount="100"),
            deal("N", "2024-11-01", "2024-11-10", won=True, amount="200"),
            deal("D", "2024-12-01", "2024-12-10", won=True, amount="300"),
            deal("J", "2025-01-01", "2025-01-10", won=True, amount="500"),
            deal("L", "2025-01-01", "2025-01-11", won=False),
        ],
        baseline_months=3,
    )
    got = {(r["period_start"], r["kpi"]): r for r in rows(con, "SELECT * FROM kpi.vs_baseline")}
    jan = got[(dt.date(2025, 1, 1), "revenue_won")]
    assert (jan["value"], jan["baseline"], jan["delta"]) == (500.0, 200.0, 300.0)
    assert jan["delta_pct"] == pytest.approx(1.5)
    feb = got[(dt.date(2025, 2, 1), "revenue_won")]
    assert (feb["value"], feb["delta"]) == (0.0, -200.0)
    assert feb["delta_pct"] == pytest.approx(-1.0)


def test_vs_baseline_delta_pct_is_null_when_baseline_is_zero_or_null(project):
    # deals_lost: baseline 0, January 1 -> delta 1, delta_pct null.
    # csat_avg: no responses -> baseline null -> delta and delta_pct null.
    con = project(
        deals=[deal("L", "2025-01-01", "2025-01-11", won=False)],
        baseline_months=3,
    )
    got = {(r["period_start"], r["kpi"]): r for r in rows(con, "SELECT * FROM kpi.vs_baseline")}
    lost = got[(dt.date(2025, 1, 1), "deals_lost")]
    assert (lost["value"], lost["baseline"], lost["delta"]) == (1.0, 0.0, 1.0)
    assert lost["delta_pct"] is None
    csat = got[(dt.date(2025, 1, 1), "csat_avg")]
    assert (csat["baseline"], csat["delta"], csat["delta_pct"]) == (None, None, None)


def test_vs_baseline_has_every_kpi_of_every_period(project):
    # Oct 2024 .. Mar 2025 = 6 periods x every KPI of the registry.
    con = project(baseline_months=3)
    kpis = {r["kpi"] for r in rows(con, "SELECT DISTINCT kpi FROM kpi.vs_baseline")}
    assert kpis == set(KPI_COLUMNS)
    assert con.execute("SELECT count(*) FROM kpi.vs_baseline").fetchone()[0] == 6 * len(KPI_COLUMNS)


def test_time_in_stage_per_period_of_exit(project):
    # D1: entered 'qualified' Jan 10 00:00, 'proposal' Jan 13 12:00 (3.5 days), won Feb 2 12:00
    #     (20 days in proposal, exits in February).
    # D2: entered 'qualified' Jan 20, 'proposal' Jan 21 (1 day); still open: its proposal stay has no exit.
    # D3 is deleted: its 100-day stay counts nowhere.
    history = [
        {"deal_id": "D1", "stage": "qualified", "entered_at": "2025-01-10T00:00:00Z"},
        {"deal_id": "D1", "stage": "proposal", "entered_at": "2025-01-13T12:00:00Z"},
        {"deal_id": "D1", "stage": "closedwon", "entered_at": "2025-02-02T12:00:00Z"},
        {"deal_id": "D2", "stage": "qualified", "entered_at": "2025-01-20T00:00:00Z"},
        {"deal_id": "D2", "stage": "proposal", "entered_at": "2025-01-21T00:00:00Z"},
        {"deal_id": "D3", "stage": "qualified", "entered_at": "2024-10-01T00:00:00Z"},
        {"deal_id": "D3", "stage": "proposal", "entered_at": "2025-01-09T00:00:00Z"},
    ]
    con = project(
        deals=[deal("D1", "2025-01-10", "2025-02-02T12:00:00Z", won=True),
               deal("D2", "2025-01-20"),
               deal("D3", "2024-10-01", is_deleted="true")],
        files={"deal_stage_history": (["deal_id", "stage", "entered_at"], history)},
    )
    got = rows(con, "SELECT * FROM kpi.stage_durations ORDER BY period_start, stage")
    assert [(r["period_start"].isoformat(), r["stage"], r["stage_exits"]) for r in got] == [
        ("2025-01-01", "qualified", 2), ("2025-02-01", "proposal", 1)]
    # January: qualified stays of 3.5 and 1 days -> median 2.25, mean 2.25.
    assert got[0]["days_in_stage_median"] == pytest.approx(2.25)
    assert got[0]["days_in_stage_mean"] == pytest.approx(2.25)
    assert got[1]["days_in_stage_median"] == pytest.approx(20.0)


def test_customer_kpis_are_null_not_zero_when_no_source_provides_customers(project):
    # Deals and spend, but no customers file: how many customers churned is unknown, not 0.
    con = project(deals=[deal("D1", "2025-01-05", "2025-01-20", won=True)],
                  finance=[gl("G1", "2025-01-10", "6200", "900")])
    jan = period(con, "2025-01-01")
    customer_kpis = ("customers_active_start", "customers_new", "customers_churned", "churn_rate",
                     "retention_rate", "cac")
    assert {k: jan[k] for k in customer_kpis} == dict.fromkeys(customer_kpis)
    assert (jan["deals_won"], jan["sales_marketing_spend"]) == (1, 900.0)
    assert {k: baseline(con)[k] for k in customer_kpis} == dict.fromkeys(customer_kpis)
    (roi,) = rows(con, "SELECT benefit_retention FROM roi.rolling WHERE period_start = '2025-01-01'")
    assert roi["benefit_retention"] == 0


def test_open_pipeline_at_the_period_start_and_pipeline_velocity(project):
    # D1 created Dec 10, open, 1,000.   D2 created Dec 20, won Jan 15, 2,000 (26 days).
    # D3 created Jan 5, lost Jan 25, 500.   D4 created Jan 20, won Feb 10, 4,000 (21 days).
    con = project(deals=[
        deal("D1", "2024-12-10", amount="1000"),
        deal("D2", "2024-12-20", "2025-01-15", won=True, amount="2000"),
        deal("D3", "2025-01-05", "2025-01-25", won=False, amount="500"),
        deal("D4", "2025-01-20", "2025-02-10", won=True, amount="4000"),
    ])
    jan, feb, mar = (period(con, p) for p in ("2025-01-01", "2025-02-01", "2025-03-01"))
    # Jan 1: D1, D2 created before, none closed.  Feb 1: D1..D4 created, D2 and D3 closed.  Mar 1: D4 closed too.
    assert (jan["open_deals_start"], jan["open_pipeline_value_start"]) == (2, 3000.0)
    assert (feb["open_deals_start"], feb["open_pipeline_value_start"]) == (2, 5000.0)
    assert (mar["open_deals_start"], mar["open_pipeline_value_start"]) == (1, 1000.0)
    # Jan: 2 open x win rate 1/2 x deal size 2,000 / 26 days.  Feb: 2 x 1 x 4,000 / 21.  Mar: nothing closed.
    assert jan["pipeline_velocity"] == pytest.approx(2 * 0.5 * 2000 / 26)
    assert feb["pipeline_velocity"] == pytest.approx(2 * 1.0 * 4000 / 21)
    assert mar["pipeline_velocity"] is None
    assert period(con, "2024-12-01")["pipeline_velocity"] is None  # no open deal at Dec 1


def test_deal_kpis_by_owner_pipeline_and_segment(project):
    # D1 U1/P1/EMEA won Jan 20 (1,000, created Jan 5).  D2 U2/P1/no segment lost Jan 25 (created Jan 10).
    # D3 U1/P2/EMEA won Feb 11 (3,000, created Feb 1).
    con = project(deals=[
        deal("D1", "2025-01-05", "2025-01-20", won=True, amount="1000", owner_id="U1", pipeline="P1", segment="EMEA"),
        deal("D2", "2025-01-10", "2025-01-25", won=False, owner_id="U2", pipeline="P1"),
        deal("D3", "2025-02-01", "2025-02-11", won=True, amount="3000", owner_id="U1", pipeline="P2", segment="EMEA"),
    ])
    got = {(r["segment_type"], r["segment"], str(r["period_start"])): r
           for r in rows(con, "SELECT * FROM kpi.periodic_by_segment")}
    # U1, U2, P1, P2 and EMEA (deals without a segment are no segment) x 15 months, Jan 2024 .. Mar 2025.
    assert len(got) == 5 * 15
    u1_jan, u2_jan = got[("owner_id", "U1", "2025-01-01")], got[("owner_id", "U2", "2025-01-01")]
    assert (u1_jan["deals_created"], u1_jan["deals_won"], u1_jan["win_rate"]) == (1, 1, 1.0)
    assert u1_jan["revenue_won"] == 1000
    assert (u2_jan["deals_lost"], u2_jan["win_rate"], u2_jan["revenue_won"]) == (1, 0.0, 0)
    p1_jan = got[("pipeline", "P1", "2025-01-01")]
    assert (p1_jan["deals_created"], p1_jan["win_rate"], p1_jan["avg_deal_size"]) == (2, 0.5, 1000.0)
    emea_feb = got[("segment", "EMEA", "2025-02-01")]
    assert (emea_feb["deals_won"], emea_feb["revenue_won"], emea_feb["sales_cycle_days_mean"]) == (1, 3000, 10.0)
    assert emea_feb["phase"] == "post_go_live" and emea_feb["low_volume"] is True
    assert got[("owner_id", "U2", "2025-02-01")]["win_rate"] is None  # nothing closed


def test_data_quality_counts_valid_and_quarantined_rows_per_period_of_their_own_date(project):
    # Valid: D1 (created Jan), D2 (created Feb).  Quarantined: D3 won while open (created Feb), D4 with a
    # created_at that does not parse (no period); G1 a valid GL line posted in Mar.
    con = project(
        deals=[deal("D1", "2025-01-05"), deal("D2", "2025-02-03"),
               deal("D3", "2025-02-07", is_won="true"), deal("D4", "not a date")],
        finance=[gl("G1", "2025-03-02", "6100", "100")],
    )
    got = {(str(r["period_start"]), r["table_name"], r["reason"]): r["rows"]
           for r in rows(con, "SELECT * FROM kpi.data_quality")}
    assert got == {
        ("2025-01-01", "deals", None): 1,
        ("2025-02-01", "deals", None): 1,
        ("2025-02-01", "deals", "is_won while not is_closed"): 1,
        ("None", "deals", "unparseable created_at"): 1,
        ("2025-03-01", "finance_gl", None): 1,
    }
