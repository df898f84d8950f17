"""ROI definitions (docs/tables.md), hand-worked through the SQL models.

Each test writes a tiny export through the `project` fixture and checks
roi.rolling / roi.summary against the working in its comments. Revenue comes
from won deals, operating cost / CRM cost from GL lines (6300 operating_cost,
6100 crm_software, 6110 crm_implementation), churn from customers.csv.
Defaults: go-live 2025-01-01, monthly periods, margin = attribution = 1,
no risk haircut, discount rate 10 %, no arpa_monthly.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import deal, gl, rows

CUSTOMER_COLUMNS = ["customer_id", "name", "started_at", "churned_at", "mrr"]


def rolling(con) -> dict[dt.date, dict]:
    return {r["period_start"]: r for r in rows(con, "SELECT * FROM roi.rolling")}


def summary(con) -> dict:
    (row,) = rows(con, "SELECT * FROM roi.summary")
    return row


def won(deal_id: str, closed: str, amount: float) -> dict:
    """A deal won on `closed`, created the same day."""
    return deal(deal_id, closed, closed, won=True, amount=str(amount))


def customers(*specs: tuple[str, str, str]) -> dict:
    return {"customers": (CUSTOMER_COLUMNS, [[cid, cid, start, churn, "100"]
                                             for cid, start, churn in specs])}


JAN, FEB, MAR = dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)


def test_benefit_revenue_is_incremental_revenue_times_margin_and_attribution(project):
    # Baseline (Oct-Dec 2024): 1000, 2000, 3000 -> 2000 per month.
    # January 12,000 -> incremental 10,000 ; x margin 0.6 x attribution 0.5 = 3000.
    # CRM cost 1000 in January: net 2000.
    con = project(
        deals=[won("O", "2024-10-10", 1000), won("N", "2024-11-10", 2000),
               won("D", "2024-12-10", 3000), won("J", "2025-01-10", 12000)],
        finance=[gl("C1", "2025-01-05", "6100", "1000")],
        baseline_months=3, as_of="2025-01-31", gross_margin=0.6, attribution_share=0.5,
    )
    (jan,) = rolling(con).values()
    assert jan["period_start"] == JAN
    assert jan["incremental_revenue"] == pytest.approx(10_000)
    assert jan["benefit_revenue"] == pytest.approx(3000)
    assert jan["benefit_total"] == pytest.approx(3000)
    assert jan["cost_total"] == pytest.approx(1000)
    assert jan["net_benefit"] == pytest.approx(2000)


def test_benefit_cost_savings_is_baseline_minus_actual_operating_cost_times_attribution(project):
    # Baseline operating cost (Oct-Dec 2024): 900, 1200, 900 -> 1000.
    # January 600 -> (1000 - 600) x 0.5 = 200 ; February 1300 -> (1000 - 1300) x 0.5 = -150.
    # Gross margin (0.6) applies to revenue only, not to savings.
    con = project(
        finance=[gl("O1", "2024-10-15", "6300", "900"), gl("O2", "2024-11-15", "6300", "1200"),
                 gl("O3", "2024-12-15", "6300", "900"), gl("O4", "2025-01-15", "6300", "600"),
                 gl("O5", "2025-02-15", "6300", "1300")],
        baseline_months=3, as_of="2025-02-28", gross_margin=0.6, attribution_share=0.5,
    )
    r = rolling(con)
    assert sorted(r) == [JAN, FEB]
    assert r[JAN]["benefit_cost_savings"] == pytest.approx(200)
    assert r[FEB]["benefit_cost_savings"] == pytest.approx(-150)
    assert r[JAN]["benefit_revenue"] == 0
    assert r[JAN]["benefit_total"] == pytest.approx(200)
    assert r[FEB]["benefit_total"] == pytest.approx(-150)


def test_risk_adjustment_haircuts_the_total_benefit_only(project):
    # Baseline revenue 0, operating cost 1000/month (Oct-Dec). January: revenue 1000,
    # operating 800 -> revenue benefit 1000 + savings 200 = 1200 ; x (1 - 0.25) = 900.
    con = project(
        deals=[won("J", "2025-01-10", 1000)],
        finance=[gl("O1", "2024-10-15", "6300", "1000"), gl("O2", "2024-11-15", "6300", "1000"),
                 gl("O3", "2024-12-15", "6300", "1000"), gl("O4", "2025-01-15", "6300", "800")],
        baseline_months=3, as_of="2025-01-31", risk_adjustment=0.25,
    )
    jan = rolling(con)[JAN]
    assert jan["benefit_revenue"] == pytest.approx(1000)
    assert jan["benefit_cost_savings"] == pytest.approx(200)
    assert jan["benefit_total"] == pytest.approx(900)


# 20 customers from 2024-06-01; K01, K02 churn in December 2024; K03 in February 2025.
RETENTION_CUSTOMERS = customers(
    ("K01", "2024-06-01", "2024-12-10"),
    ("K02", "2024-06-01", "2024-12-11"),
    ("K03", "2024-06-01", "2025-02-15"),
    *[(f"K{i:02d}", "2024-06-01", "") for i in range(4, 21)],
)


def test_benefit_retention_values_customers_saved_so_far(project):
    # Baseline = December 2024 only (baseline_months 1): active 20, churned 2 -> churn 0.10.
    # January: active 18, churned 0: saved (0.10 - 0) x 18 = 1.8 ; so far 1.8.
    # February: active 18, churned 1: saved (0.10 - 1/18) x 18 = 1.8 - 1 = 0.8 ; so far 2.6.
    # benefit = so far x arpa 100 x 1 month x margin 0.8 x attribution 0.5:
    #   January 1.8 x 40 = 72 ; February 2.6 x 40 = 104.
    con = project(
        files=RETENTION_CUSTOMERS,
        baseline_months=1, as_of="2025-02-28", arpa_monthly=100,
        gross_margin=0.8, attribution_share=0.5,
    )
    (b,) = rows(con, "SELECT churn_rate FROM kpi.baseline")
    assert b["churn_rate"] == pytest.approx(0.10)
    r = rolling(con)
    assert r[JAN]["benefit_retention"] == pytest.approx(72)
    assert r[FEB]["benefit_retention"] == pytest.approx(104)
    assert r[FEB]["benefit_total"] == pytest.approx(104)
    assert r[FEB]["cumulative_benefit"] == pytest.approx(176)


def test_benefit_retention_is_zero_without_arpa_monthly(project):
    con = project(files=RETENTION_CUSTOMERS, baseline_months=1, as_of="2025-02-28")
    assert [r["benefit_retention"] for r in rolling(con).values()] == [0, 0]


def test_pre_go_live_implementation_cost_counts_and_rolling_starts_at_its_period(project):
    # Baseline 2024 revenue: 12,000 won in November -> 1000 per month.
    # Implementation 5000 posted 2024-11-15, so roi.rolling starts in November 2024.
    # Nov, Dec (before go-live): every benefit 0 (Nov revenue 12,000 and Dec 0 are not
    # benefits), costs count. January: revenue 6000 -> incremental 5000.
    #   Nov: cost 5000, cum b 0 / c 5000, roi -1
    #   Dec: cost 0,    cum b 0 / c 5000
    #   Jan: benefit 5000, cum b 5000 / c 5000, roi 0, payback reached.
    # payback_period_months counts from go-live: 1 (not 3).
    con = project(
        deals=[won("N", "2024-11-10", 12000), won("J", "2025-01-10", 6000)],
        finance=[gl("I1", "2024-11-15", "6110", "5000")],
        as_of="2025-01-31",
    )
    r = rolling(con)
    nov, dec = dt.date(2024, 11, 1), dt.date(2024, 12, 1)
    assert sorted(r) == [nov, dec, JAN]
    for pre in (nov, dec):
        assert r[pre]["incremental_revenue"] == 0
        assert r[pre]["benefit_revenue"] == 0
        assert r[pre]["benefit_total"] == 0
    assert r[nov]["cost_total"] == pytest.approx(5000)
    assert r[nov]["roi"] == pytest.approx(-1.0)
    assert r[dec]["cumulative_cost"] == pytest.approx(5000)
    assert r[dec]["payback_reached"] is False
    assert r[JAN]["incremental_revenue"] == pytest.approx(5000)
    assert r[JAN]["cumulative_benefit"] == pytest.approx(5000)
    assert r[JAN]["roi"] == pytest.approx(0.0)
    assert r[JAN]["payback_reached"] is True
    # npv counts k from the first roi.rolling row (November), not from go-live:
    # -5000 / 1.1^0 + 0 / 1.1^(1/12) + 5000 / 1.1^(2/12) = -5000 + 4921.34 = -78.66
    assert r[JAN]["npv_cumulative"] == pytest.approx(-5000 + 5000 / 1.1 ** (2 / 12))
    s = summary(con)
    assert s["cumulative_cost"] == pytest.approx(5000)
    assert s["payback_period_months"] == pytest.approx(1.0)
    assert s["periods_since_go_live"] == 1


def test_cumulative_sums_roi_and_payback_per_row(project):
    # Baseline revenue 0. Jan: cost 3000. Feb: won 2000, cost 500. Mar: won 2000, cost 500.
    #   Jan: net -3000 ; cum b 0    c 3000 ; roi -1 ;             ratio 0   ; no payback
    #   Feb: net  1500 ; cum b 2000 c 3500 ; roi -1500/3500 ;     ratio 4/7 ; no payback
    #   Mar: net  1500 ; cum b 4000 c 4000 ; roi 0 ;              ratio 1   ; payback (>=)
    # payback_period_months = 3 rows from go-live x 1 month.
    con = project(
        deals=[won("F", "2025-02-10", 2000), won("M", "2025-03-10", 2000)],
        finance=[gl("I1", "2025-01-05", "6110", "3000"), gl("S1", "2025-02-05", "6100", "500"),
                 gl("S2", "2025-03-05", "6100", "500")],
    )
    got = [(r["net_benefit"], r["cumulative_benefit"], r["cumulative_cost"], r["roi"],
            r["roi_pct"], r["gross_return_ratio"], r["payback_reached"])
           for r in rolling(con).values()]
    assert got == [
        (-3000, 0, 3000, -1.0, -100.0, 0.0, False),
        (1500, 2000, 3500, pytest.approx(-3 / 7), pytest.approx(-300 / 7),
         pytest.approx(4 / 7), False),
        (1500, 4000, 4000, 0.0, 0.0, 1.0, True),
    ]
    s = summary(con)
    assert s["payback_period_months"] == pytest.approx(3.0)
    assert (s["cumulative_benefit"], s["cumulative_cost"], s["roi"]) == (4000, 4000, 0.0)


def test_payback_period_is_null_while_not_reached(project):
    con = project(finance=[gl("I1", "2025-01-05", "6110", "3000")])
    s = summary(con)
    assert s["payback_period_months"] is None
    assert s["roi"] == pytest.approx(-1.0)
    assert not any(r["payback_reached"] for r in rolling(con).values())


def test_roi_ratios_are_null_when_cumulative_cost_is_zero(project):
    # January revenue 1000 over a 0 baseline, no CRM cost at all: no ratio is defined.
    con = project(deals=[won("J", "2025-01-10", 1000)], as_of="2025-01-31")
    jan = rolling(con)[JAN]
    assert jan["cumulative_benefit"] == pytest.approx(1000)
    assert jan["cumulative_cost"] == 0
    assert (jan["roi"], jan["roi_pct"], jan["gross_return_ratio"], jan["roi_trailing_12m"]) == (
        None, None, None, None)
    s = summary(con)
    assert (s["roi"], s["roi_pct"], s["gross_return_ratio"]) == (None, None, None)


def test_roi_trailing_12m_uses_only_the_last_12_months(project):
    # go-live 2024-01-01, baseline December 2023 (no revenue), 15 rows Jan 2024 .. Mar 2025.
    # Every month: won 1000 (benefit 1000). Costs: implementation 12,000 in Jan 2024,
    # software 500 each month from Feb 2024.
    #   Jan 2024: rows {Jan 24}: (1000 - 12000) / 12000 = -11/12 (fewer than 12 rows)
    #   Dec 2024: rows Jan..Dec 2024: b 12000, c 12000 + 11 x 500 = 17500 -> -5500/17500
    #   Jan 2025: rows Feb 2024..Jan 2025: b 12000, c 12 x 500 = 6000 -> 1.0
    #   Mar 2025: rows Apr 2024..Mar 2025: 1.0 ; cumulative: b 15000, c 19000 -> -4000/19000
    months = [dt.date(2024 + (m // 12), m % 12 + 1, 1) for m in range(15)]
    con = project(
        deals=[won(f"W{i}", f"{m:%Y-%m}-10", 1000) for i, m in enumerate(months)],
        finance=[gl("I1", "2024-01-05", "6110", "12000")]
        + [gl(f"S{i}", f"{m:%Y-%m}-05", "6100", "500") for i, m in enumerate(months[1:])],
        go_live="2024-01-01", baseline_months=1, as_of="2025-03-31",
    )
    r = rolling(con)
    assert sorted(r) == months
    assert r[dt.date(2024, 1, 1)]["roi_trailing_12m"] == pytest.approx(-11 / 12)
    assert r[dt.date(2024, 12, 1)]["roi_trailing_12m"] == pytest.approx(-5500 / 17500)
    assert r[dt.date(2025, 1, 1)]["roi_trailing_12m"] == pytest.approx(1.0)
    assert r[dt.date(2025, 3, 1)]["roi_trailing_12m"] == pytest.approx(1.0)
    assert r[dt.date(2025, 3, 1)]["roi"] == pytest.approx(-4000 / 19000)
    assert summary(con)["roi"] == pytest.approx(-4000 / 19000)


def test_npv_cumulative_discounts_row_k_by_k_twelfths_of_a_year(project):
    # discount_rate 0.12, baseline revenue 0. Net: Jan -1000 (cost), Feb +600, Mar +800.
    #   k=0: -1000 / 1.12^0                          = -1000
    #   k=1:   600 / 1.12^(1/12) = 600 / 1.0094888   =   594.3602
    #   k=2:   800 / 1.12^(2/12) = 800 / 1.0190676   =   785.0313
    # npv_cumulative: Jan -1000 ; Feb -405.6398 ; Mar 379.3916
    con = project(
        deals=[won("F", "2025-02-10", 600), won("M", "2025-03-10", 800)],
        finance=[gl("I1", "2025-01-05", "6110", "1000")],
        discount_rate=0.12,
    )
    npv = [r["npv_cumulative"] for r in rolling(con).values()]
    assert npv == [
        pytest.approx(-1000),
        pytest.approx(-1000 + 600 / 1.12 ** (1 / 12)),
        pytest.approx(-1000 + 600 / 1.12 ** (1 / 12) + 800 / 1.12 ** (2 / 12)),
    ]
    assert npv[2] == pytest.approx(379.3916, abs=1e-3)
    assert summary(con)["npv"] == pytest.approx(379.3916, abs=1e-3)


@pytest.mark.parametrize(("as_of", "periods", "rolling_rows"), [
    ("2025-03-15", 2, [JAN, FEB]),       # March is incomplete: not in roi.rolling
    ("2025-03-31", 3, [JAN, FEB, MAR]),
])
def test_periods_since_go_live_counts_complete_periods(project, as_of, periods, rolling_rows):
    con = project(finance=[gl("S1", "2025-01-05", "6100", "100")], as_of=as_of)
    s = summary(con)
    assert s["periods_since_go_live"] == periods
    assert (s["as_of"], s["go_live"]) == (dt.date.fromisoformat(as_of), JAN)
    assert sorted(rolling(con)) == rolling_rows


def test_quarterly_roi_uses_three_months_per_period(project):
    # Quarters, baseline_months 3 -> baseline = 2024-Q4. arpa_monthly 100, margin = attr = 1.
    # Customers: 10 from 2024-01-01, one churns 2024-11-15 -> baseline churn 1/10 = 0.1.
    #   Q1 2025: active 9, churn 0 -> saved 0.9, so far 0.9 -> 0.9 x 100 x 3 = 270
    #   Q2 2025: active 9, churn 0 -> saved 0.9, so far 1.8 -> 1.8 x 100 x 3 = 540
    # Revenue: baseline 1000 (Q4 2024); Q1 1000 -> incremental 0; Q2 31,000 -> 30,000.
    # Cost: implementation 20,000 in Q1.
    #   Q1: benefit 270,    cost 20,000 ; cum 270 / 20,000   ; no payback
    #   Q2: benefit 30,540, cost 0      ; cum 30,810 / 20,000 ; payback -> 2 rows x 3 = 6 months
    #   roi = 10,810 / 20,000 = 0.5405
    #   npv = (270 - 20,000) + 30,540 / 1.1^(3/12) = -19,730 + 29,820.9079 = 10,090.9079
    con = project(
        deals=[won("B", "2024-11-01", 1000), won("Q1", "2025-02-01", 1000),
               won("Q2", "2025-05-01", 31000)],
        finance=[gl("I1", "2025-02-01", "6110", "20000")],
        files=customers(("C1", "2024-01-01", "2024-11-15"),
                        *[(f"C{i}", "2024-01-01", "") for i in range(2, 11)]),
        period="quarter", baseline_months=3, as_of="2025-06-30", arpa_monthly=100,
    )
    q1, q2 = dt.date(2025, 1, 1), dt.date(2025, 4, 1)
    r = rolling(con)
    assert sorted(r) == [q1, q2]
    assert r[q1]["benefit_retention"] == pytest.approx(270)
    assert r[q2]["benefit_retention"] == pytest.approx(540)
    assert r[q2]["incremental_revenue"] == pytest.approx(30_000)
    assert r[q1]["payback_reached"] is False
    assert r[q2]["payback_reached"] is True
    assert r[q2]["roi"] == pytest.approx(0.5405)
    assert r[q2]["npv_cumulative"] == pytest.approx(-19_730 + 30_540 / 1.1 ** 0.25)
    s = summary(con)
    assert s["payback_period_months"] == pytest.approx(6.0)
    assert s["periods_since_go_live"] == 2
    assert s["npv"] == pytest.approx(10_090.9079, abs=1e-3)


def test_weekly_roi_uses_twelve_fifty_seconds_of_a_month_per_period(project):
    # go-live Monday 2025-01-06; as_of Sunday 2025-01-19 -> two complete weeks.
    # Week 1: cost 1000. Week 2: won 1500 (baseline revenue 0). Payback in row 2:
    # 2 x 12/52 months = 0.4615. npv = -1000 + 1500 / 1.1^(1/52).
    con = project(
        deals=[won("W", "2025-01-14", 1500)],
        finance=[gl("I1", "2025-01-07", "6110", "1000")],
        period="week", go_live="2025-01-06", as_of="2025-01-19",
    )
    r = rolling(con)
    assert sorted(r) == [dt.date(2025, 1, 6), dt.date(2025, 1, 13)]
    s = summary(con)
    assert s["payback_period_months"] == pytest.approx(2 * 12 / 52)
    assert s["npv"] == pytest.approx(-1000 + 1500 / 1.1 ** (1 / 52))
    assert s["periods_since_go_live"] == 2
