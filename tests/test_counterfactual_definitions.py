"""Counterfactual, sensitivity and TEI definitions, hand-worked through the SQL models.

Each test writes a tiny export through the `project` fixture and checks roi.counterfactual,
roi.rolling, roi.sensitivity, roi.tei or roi.summary against the working in its comments.
Revenue comes from deals won (and created) on the 10th of a month. Defaults: go-live
2025-01-01, monthly periods, margin = attribution = 1, no risk haircut, discount 10 %.
"""

from __future__ import annotations

import datetime as dt
import math

import dagster as dg
import pytest

from pipelines.checks import run_sql_checks
from pipelines.config import load_settings
from pipelines.models import REGISTRY
from pipelines.warehouse import connect
from tests.conftest import deal, gl, rows

JAN, FEB = dt.date(2025, 1, 1), dt.date(2025, 2, 1)


def won(deal_id: str, month: str, amount: float, **extra: str) -> dict:
    """A deal created and won on the 10th of `month` (YYYY-MM)."""
    return deal(deal_id, f"{month}-10", f"{month}-10", won=True, amount=f"{amount:.6f}", **extra)


def months(first: dt.date, count: int) -> list[str]:
    return [f"{first.year + (first.month - 1 + i) // 12}-{(first.month - 1 + i) % 12 + 1:02d}" for i in range(count)]


def expected(con, method: str | None = None) -> dict[dt.date, float]:
    """roi.rolling's expected_revenue per period, or roi.counterfactual's for `method`."""
    if method is None:
        return {r["period_start"]: r["expected_revenue"] for r in rows(con, "SELECT * FROM roi.rolling")}
    return {r["period_start"]: r["expected_revenue"]
            for r in rows(con, "SELECT * FROM roi.counterfactual WHERE method = ?", [method])}


def rolling(con) -> dict[dt.date, dict]:
    return {r["period_start"]: r for r in rows(con, "SELECT * FROM roi.rolling")}


def summary(con) -> dict:
    (row,) = rows(con, "SELECT * FROM roi.summary")
    return row


# -- the methods ---------------------------------------------------------------------------------

def test_flat_expects_the_baseline_mean_and_pre_go_live_rows_expect_their_actual_revenue(project):
    # Baseline Oct-Dec 2024: 1000, 2000, 3000 -> E = 2000. Implementation cost in December makes
    # December a roi.rolling row before go-live: its expected_revenue is its actual 3000.
    # January 2500 -> incremental 500.
    con = project(
        deals=[won("O", "2024-10", 1000), won("N", "2024-11", 2000), won("D", "2024-12", 3000),
               won("J", "2025-01", 2500)],
        finance=[gl("I", "2024-12-05", "6110", "100")],
        baseline_months=3, as_of="2025-01-31",
    )
    r = rolling(con)
    assert r[dt.date(2024, 12, 1)]["expected_revenue"] == pytest.approx(3000)
    assert r[dt.date(2024, 12, 1)]["incremental_revenue"] == 0
    assert r[JAN]["expected_revenue"] == pytest.approx(2000)
    assert r[JAN]["incremental_revenue"] == pytest.approx(500)
    assert summary(con)["counterfactual_method"] == "flat"
    assert summary(con)["incremental_revenue"] == pytest.approx(500)


def test_a_period_without_expected_revenue_is_a_warning(project, tmp_path):
    # go-live mid-January with one baseline month: no whole period lies in the baseline window, so
    # nothing can be expected and January-February count no incremental revenue; the run warns.
    project(deals=[won("J", "2025-02", 1000)], baseline_months=1, go_live="2025-01-15", as_of="2025-02-28").close()
    settings = load_settings(tmp_path / "crm_roi.yaml")
    with connect(settings.duckdb_path, settings) as con:
        rolling_rows = {r["period_start"]: r for r in rows(con, "SELECT * FROM roi.rolling")}
        (check,) = [c for c in run_sql_checks(con, REGISTRY.table("roi.rolling"))
                    if c.check_name == "expected_revenue_after_go_live"]
    assert rolling_rows[FEB]["expected_revenue"] is None and rolling_rows[FEB]["incremental_revenue"] == 0
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["failing_rows"].value == 1  # February; January holds go-live, so it is before it


def test_seasonal_takes_the_same_month_of_the_last_baseline_year_grown_by_the_year_on_year_growth(project):
    # Baseline 2023-01..2024-12 (24 months). 2023: 1000 a month, February 2000 (13,000 in all);
    # 2024: 1300 a month, February 2600 (16,900) -> growth g = 16,900 / 13,000 = 1.3.
    # January 2025: E = January 2024 x 1.3^1 = 1690 ; February 2025: 2600 x 1.3 = 3380.
    # Actual January 2000 -> incremental 310 ; February 3380 -> 0.
    baseline = [won(f"B{m}", m, (2000 if m.endswith("-02") else 1000) * (1.3 if m.startswith("2024") else 1))
                for m in months(dt.date(2023, 1, 1), 24)]
    con = project(
        deals=[*baseline, won("J", "2025-01", 2000), won("F", "2025-02", 3380)],
        baseline_months=24, as_of="2025-02-28", counterfactual={"method": "seasonal"},
    )
    r = rolling(con)
    assert r[JAN]["expected_revenue"] == pytest.approx(1690)
    assert r[FEB]["expected_revenue"] == pytest.approx(3380)
    assert r[JAN]["incremental_revenue"] == pytest.approx(310)
    assert r[FEB]["incremental_revenue"] == pytest.approx(0, abs=1e-6)
    # On the baseline itself the method reproduces the last year and grows back the year before.
    cf = expected(con, "seasonal")
    assert cf[dt.date(2024, 2, 1)] == pytest.approx(2600)
    assert cf[dt.date(2023, 2, 1)] == pytest.approx(2000)


def test_seasonal_with_one_baseline_year_has_no_growth(project):
    # Baseline 2024, 100 x month number: January 2025 expects January 2024 (100), March 2025
    # expects March 2024 (300).
    con = project(
        deals=[won(f"B{i}", m, 100 * (i + 1)) for i, m in enumerate(months(dt.date(2024, 1, 1), 12))],
        as_of="2025-03-31", counterfactual={"method": "seasonal"},
    )
    e = expected(con)
    assert (e[JAN], e[FEB], e[dt.date(2025, 3, 1)]) == (pytest.approx(100), pytest.approx(200), pytest.approx(300))


def test_trend_extrapolates_a_constant_growth_rate_fitted_to_ln_revenue(project):
    # Baseline Oct-Dec 2024: 1000, 1100, 1210 = 1000 x 1.1^t, t = 0, 1, 2: the fit is exact,
    # a = ln 1000, b = ln 1.1. January (t = 3): E = 1000 x 1.1^3 = 1331 ; February: 1464.1.
    # Actual January 1331 -> 0 ; February 2000 -> 535.9.
    con = project(
        deals=[won("O", "2024-10", 1000), won("N", "2024-11", 1100), won("D", "2024-12", 1210),
               won("J", "2025-01", 1331), won("F", "2025-02", 2000)],
        baseline_months=3, as_of="2025-02-28", counterfactual={"method": "trend"},
    )
    r = rolling(con)
    assert r[JAN]["expected_revenue"] == pytest.approx(1331)
    assert r[FEB]["expected_revenue"] == pytest.approx(1464.1)
    assert r[FEB]["incremental_revenue"] == pytest.approx(535.9)


def test_trend_with_two_baseline_years_fits_a_term_per_month(project):
    # Revenue 1000 x 1.02^t x 3 in Decembers (t = 0 for 2023-01): ln revenue is exactly linear plus
    # a December term, so the fit is exact: E(t) = 1000 x 1.02^t (x 3 in December). January 2025
    # is t = 24: 1000 x 1.02^24 = 1608.437. Without the seasonal terms the Decembers would tilt it.
    def revenue(t: int, month: str) -> float:
        return 1000 * 1.02 ** t * (3 if month.endswith("-12") else 1)

    con = project(
        deals=[won(f"B{t}", m, revenue(t, m)) for t, m in enumerate(months(dt.date(2023, 1, 1), 24))],
        baseline_months=24, as_of="2025-01-31", counterfactual={"method": "trend"},
    )
    assert expected(con)[JAN] == pytest.approx(1000 * 1.02 ** 24, rel=1e-9)
    assert expected(con, "trend")[dt.date(2024, 12, 1)] == pytest.approx(revenue(23, "2024-12"), rel=1e-9)


def test_control_scales_the_treated_baseline_by_the_control_groups_revenue(project):
    # Segment APAC is the control. Baseline Oct-Dec 2024: treated 1000 each month; control 500,
    # 550, 605 (mean 551.6667). January: control 662, treated 1500 ->
    #   E = 1000 x 662 / 551.6667 = 1200.0 ; incremental = 1500 - 1200 = 300.
    # roi.rolling counts the treated group only: the control's own revenue is no benefit.
    # Pretrend: ln(treated / control) = ln 2 - t ln 1.1, a slope of -ln 1.1 a month = -12 ln 1.1 a year.
    control = [won("C1", "2024-10", 500, segment="APAC"), won("C2", "2024-11", 550, segment="APAC"),
               won("C3", "2024-12", 605, segment="APAC"), won("C4", "2025-01", 662, segment="APAC")]
    treated = [won(f"T{m}", m, 1000, segment="EMEA") for m in ("2024-10", "2024-11", "2024-12")]
    con = project(
        deals=[*control, *treated, won("TJ", "2025-01", 1500)],  # segment left empty: treated
        finance=[gl("S", "2025-01-05", "6100", "100")],
        baseline_months=3, as_of="2025-01-31",
        counterfactual={"method": "control", "control": {"column": "segment", "values": ["APAC"]}},
    )
    jan = rolling(con)[JAN]
    assert jan["expected_revenue"] == pytest.approx(1000 * 662 / ((500 + 550 + 605) / 3))
    assert jan["incremental_revenue"] == pytest.approx(1500 - 1000 * 662 / ((500 + 550 + 605) / 3))
    s = summary(con)
    assert s["control_pretrend_slope"] == pytest.approx(-12 * math.log(1.1))
    cf = {r["period_start"]: r for r in rows(con, "SELECT * FROM roi.counterfactual WHERE method = 'control'")}
    assert (cf[JAN]["revenue_won"], cf[JAN]["control_revenue_won"]) == (pytest.approx(1500), pytest.approx(662))


def test_normalise_by_active_owners_credits_a_bigger_team_to_the_team_not_the_crm(project):
    # Baseline Oct-Dec 2024: owner U1 wins 1000 a month -> 1000 per active owner.
    # January: U1 and U2 win 1000 each, and U3 only creates a deal (active too): 3 active owners.
    #   flat per owner: E = 1000 x 3 = 3000 ; revenue 2000 -> incremental -1000.
    #   plain flat would expect 1000 and credit the CRM with +1000.
    deals = [won(f"B{m}", m, 1000, owner_id="U1") for m in ("2024-10", "2024-11", "2024-12")]
    deals += [won("J1", "2025-01", 1000, owner_id="U1"), won("J2", "2025-01", 1000, owner_id="U2"),
              deal("J3", "2025-01-20", owner_id="U3")]
    con = project(deals=deals, baseline_months=3, as_of="2025-01-31",
                  counterfactual={"normalise_by": "active_owners"})
    jan = rolling(con)[JAN]
    assert jan["expected_revenue"] == pytest.approx(3000)
    assert jan["incremental_revenue"] == pytest.approx(-1000)
    (owners,) = rows(con, "SELECT active_owners FROM roi.counterfactual WHERE method = 'flat' AND period_start = ?",
                     [JAN])
    assert owners["active_owners"] == 3


# -- sensitivity ---------------------------------------------------------------------------------

def test_sensitivity_moves_one_assumption_at_a_time(project):
    # Baseline 2024: no revenue, operating cost 1000 a month. January 2025: won 100,000, no operating
    # cost, CRM cost 20,000. Margin 0.5, share 0.5, no haircut:
    #   revenue benefit 100,000 x 0.25 = 25,000 ; savings (1000 - 0) x 0.5 = 500 ; ROI 5,500 / 20,000 = 0.275
    #   margin x0.8 = 0.4:  40,000 x 0.5 = 20,000 + 500      -> 0.025
    #   margin x1.2 = 0.6:  30,000 + 500                      -> 0.525
    #   share x0.8 = 0.4:   100,000 x 0.2 = 20,000 + 400      -> 0.02
    #   share x1.2 = 0.6:   30,000 + 600                      -> 0.53
    #   risk +0.1:          25,500 x 0.9 = 22,950             -> 0.1475
    #   risk -0.1 -> 0 (within [0, 1]): the configured ROI    -> 0.275
    opex = [gl(f"O{m}", f"{m}-15", "6300", "1000") for m in months(dt.date(2024, 1, 1), 12)]
    con = project(
        deals=[won("J", "2025-01", 100_000)],
        finance=[*opex, gl("C", "2025-01-05", "6110", "20000")],
        as_of="2025-01-31", gross_margin=0.5, attribution_share=0.5,
    )
    got = {(r["assumption"], r["setting"]): r for r in rows(con, "SELECT * FROM roi.sensitivity")}
    want = {("gross_margin", "x0.8"): (0.4, 0.025), ("gross_margin", "x1.2"): (0.6, 0.525),
            ("attribution_share", "x0.8"): (0.4, 0.02), ("attribution_share", "x1.2"): (0.6, 0.53),
            ("risk_adjustment", "-0.1"): (0.0, 0.275), ("risk_adjustment", "+0.1"): (0.1, 0.1475)}
    for key, (value, roi) in want.items():
        assert got[key]["value"] == pytest.approx(value), key
        assert got[key]["roi"] == pytest.approx(roi), key
        assert got[key]["roi_pct"] == pytest.approx(100 * roi), key
        assert got[key]["delta_roi"] == pytest.approx(roi - 0.275), key
    assert summary(con)["roi"] == pytest.approx(0.275)
    # Methods: flat and seasonal both expect 0 here; trend cannot fit ln 0, so it is not listed.
    methods = {setting: r for (assumption, setting), r in got.items() if assumption == "counterfactual"}
    assert set(methods) == {"flat", "seasonal"}
    assert methods["flat"]["delta_roi"] == 0
    assert methods["flat"]["value"] is None


def test_sensitivity_caps_margin_and_share_at_one(project):
    # The worked example (revenue 100,000, cost 20,000, ROI 4) at margin = share = 1: x1.2 stays 1.
    con = project(deals=[won("J", "2025-01", 100_000)], finance=[gl("C", "2025-01-05", "6110", "20000")],
                  as_of="2025-01-31")
    got = {(r["assumption"], r["setting"]): (r["value"], r["roi"]) for r in rows(con, "SELECT * FROM roi.sensitivity")}
    assert got[("gross_margin", "x1.2")] == (1.0, pytest.approx(4.0))
    assert got[("gross_margin", "x0.8")] == (pytest.approx(0.8), pytest.approx(3.0))
    assert got[("risk_adjustment", "+0.1")] == (pytest.approx(0.1), pytest.approx(3.5))


# -- TEI -----------------------------------------------------------------------------------------

def test_tei_reproduces_the_published_example(project):
    # Costs 53,150 (before go-live) / 666,715 / 636,772 / 647,783 and benefits 0 / 1,606,511 /
    # 3,061,331 / 4,229,760 at 10 %:
    #   PV costs    = 53,150 + 666,715/1.1 + 636,772/1.21 + 647,783/1.331 = 1,672,201
    #   PV benefits = 1,606,511/1.1 + 3,061,331/1.21 + 4,229,760/1.331    = 7,168,371
    #   NPV = 5,496,170 ; ROI = 5,496,170 / 1,672,201 = 329 %.
    con = project(
        deals=[won("Y1", "2025-06", 1_606_511), won("Y2", "2026-06", 3_061_331), won("Y3", "2027-06", 4_229_760)],
        finance=[gl("C0", "2024-12-15", "6110", "53150"), gl("C1", "2025-06-15", "6100", "666715"),
                 gl("C2", "2026-06-15", "6100", "636772"), gl("C3", "2027-06-15", "6100", "647783")],
        as_of="2027-12-31",
    )
    tei = rows(con, "SELECT * FROM roi.tei ORDER BY year")
    assert [(r["year"], r["year_start"], r["year_end"], r["is_projected"]) for r in tei] == [
        (0, dt.date(2024, 12, 1), JAN, False),
        (1, JAN, dt.date(2026, 1, 1), False),
        (2, dt.date(2026, 1, 1), dt.date(2027, 1, 1), False),
        (3, dt.date(2027, 1, 1), dt.date(2028, 1, 1), False),
    ]
    assert [r["costs"] for r in tei] == pytest.approx([53_150, 666_715, 636_772, 647_783])
    assert [r["benefits"] for r in tei] == pytest.approx([0, 1_606_511, 3_061_331, 4_229_760])
    assert round(sum(r["pv_costs"] for r in tei)) == 1_672_201
    assert round(sum(r["pv_benefits"] for r in tei)) == 7_168_371
    assert round(tei[-1]["cumulative_npv"]) == 5_496_170
    s = summary(con)
    assert round(s["tei_npv"]) == 5_496_170
    assert round(100 * s["tei_roi"]) == 329


def test_tei_projects_unobserved_months_from_the_trailing_12_month_run_rate(project):
    # go-live 2025-01, as_of 2026-03-31: 15 months observed. Revenue (baseline 0) 500 a month in
    # Jan-Mar 2025, then 1000 a month; CRM cost 100 a month. Horizon 2 years, cost risk +20 %.
    #   year 1 (2025): 3 x 500 + 9 x 1000 = 10,500 observed in full ; costs 1200 x 1.2 = 1440.
    #   run-rate: the trailing 12 months Apr 2025-Mar 2026 -> 1000 and 100 a month.
    #   year 2 (2026): Jan-Mar 3000 + 9 x 1000 = 12,000 (projected) ; costs 1200 x 1.2 = 1440.
    #   NPV = (10,500 - 1440) / 1.1 + (12,000 - 1440) / 1.21 = 8236.364 + 8727.273 = 16,963.636
    span = months(JAN, 15)
    con = project(
        deals=[won(f"W{m}", m, 500 if m < "2025-04" else 1000) for m in span],
        finance=[gl(f"C{m}", f"{m}-05", "6100", "100") for m in span],
        as_of="2026-03-31", tei={"horizon_years": 2, "cost_risk_adjustment": 0.2},
    )
    tei = {r["year"]: r for r in rows(con, "SELECT * FROM roi.tei")}
    assert (tei[1]["is_projected"], tei[2]["is_projected"]) == (False, True)
    assert tei[1]["benefits"] == pytest.approx(10_500)
    assert tei[2]["benefits"] == pytest.approx(12_000)
    assert tei[1]["costs"] == pytest.approx(1440)
    assert tei[2]["costs"] == pytest.approx(1440)
    assert summary(con)["tei_npv"] == pytest.approx((10_500 - 1440) / 1.1 + (12_000 - 1440) / 1.21)
    assert tei[0]["benefits"] == 0 and tei[0]["costs"] == 0


def test_tei_projects_pro_rata_from_fewer_than_12_months(project):
    # Six months observed (Jan-Jun 2025), 1000 revenue and 400 cost a month: the run-rate is 1000
    # and 400 a month. Year 1: 6000 + 6 x 1000 = 12,000, costs 4800 ; year 2: 12,000 and 4800.
    span = months(JAN, 6)
    con = project(
        deals=[won(f"W{m}", m, 1000) for m in span],
        finance=[gl(f"C{m}", f"{m}-05", "6100", "400") for m in span],
        as_of="2025-06-30", tei={"horizon_years": 2},
    )
    tei = {r["year"]: r for r in rows(con, "SELECT * FROM roi.tei")}
    assert [(tei[y]["benefits"], tei[y]["costs"], tei[y]["is_projected"]) for y in (1, 2)] == [
        (pytest.approx(12_000), pytest.approx(4800), True), (pytest.approx(12_000), pytest.approx(4800), True)]
    assert tei[2]["pv_benefits"] == pytest.approx(12_000 / 1.21)
