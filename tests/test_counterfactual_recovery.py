"""Each counterfactual method on generated data with a known injected effect.

The data: three years of won deals (24 baseline months, 12 after go-live), 300 a month at
the start, with a month-of-year pattern (Q4 peak, summer dip) and 15 %/year market growth in
the number of deals; amounts are lognormal (median 1000). The CRM effect, when injected,
multiplies the amount of every deal won after go-live by 1 + X, so the true incremental
revenue is known deal by deal: sum of amount x X / (1 + X).

Why these checks: a method is only worth its name if, without any CRM effect, its interval
covers zero while the before/after comparison (flat) credits the CRM with market growth, and
if, with an effect, it recovers it. The seed is fixed (the same data every run); the
tolerance of 3 points is about twice the error the sampling noise of ~4,000 deals a year gives
(measured over seeds 1-5 while writing this test: 0.6 to 2.4 points).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import yaml

from pipelines.config import load_settings
from tests.conftest import ACCOUNTS, DEAL_COLUMNS, GL_COLUMNS, rows, run_pipeline, write_csv

SEASON = (0.85, 0.9, 1.0, 1.0, 1.05, 0.9, 0.8, 0.85, 1.05, 1.15, 1.2, 1.25)
GROWTH = 0.15
EFFECT = 0.20
TOLERANCE = 0.03


def generate(seed: int, effect: float, segments: dict[str, bool], per_month: int) -> tuple[list[dict], float]:
    """Deals of every segment (True: gets the CRM effect after go-live), and the true incremental revenue."""
    rng = random.Random(seed)
    deals, true_incremental = [], 0.0
    for i in range(36):
        year, month = 2023 + i // 12, i % 12 + 1
        for segment, treated in segments.items():
            lift = effect if treated and i >= 24 else 0.0
            for k in range(round(per_month * SEASON[month - 1] * (1 + GROWTH) ** (i / 12))):
                amount = rng.lognormvariate(math.log(1000), 0.6) * (1 + lift)
                true_incremental += amount * lift / (1 + lift)
                day = f"{year}-{month:02d}-{rng.randint(1, 28):02d}"
                deals.append({"deal_id": f"{segment}-{i}-{k}", "owner_id": "U1", "stage": "won",
                              "is_closed": "true", "is_won": "true", "amount": f"{amount:.2f}",
                              "currency": "USD", "created_at": day, "closed_at": day, "segment": segment})
    return deals, true_incremental


def run(folder: Path, deals: list[dict], counterfactual: dict) -> tuple[dict, dict[str, float]]:
    """roi.summary, and each method's expected revenue after go-live, for `deals` under `counterfactual`."""
    write_csv(folder / "exports" / "deals.csv", [*DEAL_COLUMNS, "is_deleted", "segment"], deals)
    write_csv(folder / "finance_gl.csv", GL_COLUMNS, [{"entry_id": "C", "posted_on": "2025-01-05",
                                                       "account": "6110", "amount": "100000", "currency": "USD"}])
    config = {"as_of": "2025-12-31", "go_live": "2025-01-01", "baseline_months": 24,
              "counterfactual": counterfactual,
              "sources": [{"kind": "files", "path": "exports", "profile": "canonical"}],
              "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS}}
    (folder / "crm_roi.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    con = run_pipeline(load_settings(folder / "crm_roi.yaml"))
    try:
        (summary,) = rows(con, "SELECT * FROM roi.summary")
        expected = dict(con.execute(
            "SELECT method, sum(expected_revenue) FROM roi.counterfactual WHERE NOT in_baseline "
            "AND period_start >= DATE '2025-01-01' GROUP BY method").fetchall())
    finally:
        con.close()
    return summary, expected


def interval(summary: dict) -> tuple[float, float]:
    return summary["incremental_revenue_p05"], summary["incremental_revenue_p95"]


@pytest.fixture(scope="module")
def market_only() -> tuple[list[dict], float]:
    return generate(seed=1, effect=0.0, segments={"all": True}, per_month=300)


@pytest.fixture(scope="module")
def with_effect() -> tuple[list[dict], float]:
    return generate(seed=1, effect=EFFECT, segments={"all": True}, per_month=300)


def test_without_a_crm_effect_flat_credits_market_growth_to_the_crm(tmp_path, market_only):
    deals, true_incremental = market_only
    assert true_incremental == 0
    summary, expected = run(tmp_path, deals, {"method": "flat"})
    low, _ = interval(summary)
    assert low > 0, "flat's interval should lie above zero: growth and the Q4 peak look like CRM benefit"
    assert summary["incremental_revenue"] / expected["flat"] > 0.15


@pytest.mark.parametrize("method", ["seasonal", "trend"])
def test_without_a_crm_effect_seasonal_and_trend_intervals_cover_zero(tmp_path, market_only, method):
    deals, _ = market_only
    summary, expected = run(tmp_path, deals, {"method": method})
    low, high = interval(summary)
    assert low < 0 < high
    assert abs(summary["incremental_revenue"] / expected[method]) < TOLERANCE


@pytest.mark.parametrize("method", ["seasonal", "trend"])
def test_seasonal_and_trend_recover_a_known_effect(tmp_path, with_effect, method):
    deals, true_incremental = with_effect
    summary, expected = run(tmp_path, deals, {"method": method})
    low, high = interval(summary)
    assert low < true_incremental < high
    assert summary["incremental_revenue"] / expected[method] == pytest.approx(EFFECT, abs=TOLERANCE)
    # flat, computed beside it, more than doubles the effect.
    flat = summary["incremental_revenue"] + expected[method] - expected["flat"]
    assert flat / expected["flat"] > 2 * EFFECT


def test_control_recovers_the_treated_segments_effect_against_an_untreated_one(tmp_path):
    # EMEA gets the CRM effect, APAC does not; both share the seasonality and the market growth.
    deals, true_incremental = generate(seed=1, effect=EFFECT, segments={"EMEA": True, "APAC": False},
                                       per_month=150)
    summary, expected = run(tmp_path, deals, {"method": "control",
                                              "control": {"column": "segment", "values": ["APAC"]}})
    low, high = interval(summary)
    assert low < true_incremental < high
    assert summary["incremental_revenue"] / expected["control"] == pytest.approx(EFFECT, abs=TOLERANCE)
    assert abs(summary["control_pretrend_slope"]) < 0.1  # the groups moved in parallel before go-live
