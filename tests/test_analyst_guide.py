"""docs/analyst-guide.md: each of its queries, run on the demo's analysts' copy, gives the answer
worked out here another way (from the staging rows, in Python), not just an answer."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean

import duckdb
import pytest

from pipelines.models import KPI_COLUMNS
from tests.conftest import rows

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "analyst-guide.md"
# The demo (data/sample/crm_roi.yaml): go-live, the baseline window's start, the cut-off (as_of + 1 day).
GO_LIVE = dt.datetime(2025, 1, 1)
WINDOW_START = dt.datetime(2024, 1, 1)
CUTOFF = dt.datetime(2026, 11, 1)


def guide_queries() -> dict[int, str]:
    text = GUIDE.read_text(encoding="utf-8")
    found = re.findall(r"^### (\d+)\. .*?\n```sql\n(.*?)```", text, flags=re.S | re.M)
    return {int(number): sql for number, sql in found}


@pytest.fixture(scope="module")
def con(demo_published: Path):
    with duckdb.connect(str(demo_published), read_only=True) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        yield connection


@pytest.fixture(scope="module")
def deals(con) -> list[dict]:
    return [d for d in rows(con, "SELECT * FROM staging.deals") if not d["is_deleted"]]


def answer(con, number: int) -> list[dict]:
    return rows(con, guide_queries()[number])


def test_the_guide_has_ten_queries():
    assert sorted(guide_queries()) == list(range(1, 11))


def test_1_win_rate_by_rep(con, deals):
    closed = [d for d in deals if d["is_closed"] and d["closed_at"] < CUTOFF]
    expected = {}
    for rep in {d["owner_id"] for d in closed}:
        before = [d["is_won"] for d in closed if d["owner_id"] == rep and WINDOW_START <= d["closed_at"] < GO_LIVE]
        after = [d["is_won"] for d in closed if d["owner_id"] == rep and d["closed_at"] >= GO_LIVE]
        expected[rep] = (sum(before) / len(before) if before else None, sum(after) / len(after) if after else None,
                         len(after))
    got = answer(con, 1)
    assert {r["rep"] for r in got} == set(expected) and len(got) == len(expected) > 3
    for r in got:
        before, after, count = expected[r["rep"]]
        assert r["win_rate_before"] == pytest.approx(before, abs=5e-4)
        assert r["win_rate_after"] == pytest.approx(after, abs=5e-4)
        assert r["deals_closed_after"] == count


def test_2_days_in_stage_before_and_after(con, deals):
    kept = {(d["source"], d["deal_id"]) for d in deals}
    stays: dict[tuple[str, str], list[float]] = defaultdict(list)
    for h in rows(con, "SELECT * FROM staging.deal_stage_history WHERE exited_at IS NOT NULL"):
        if (h["source"], h["deal_id"]) not in kept or not WINDOW_START <= h["exited_at"] < CUTOFF:
            continue
        phase = "before" if h["exited_at"] < GO_LIVE else "after"
        stays[(h["stage"], phase)].append((h["exited_at"] - h["entered_at"]).total_seconds() / 86400)
    got = answer(con, 2)
    assert len(got) == 4
    for r in got:
        assert r["days_before"] == pytest.approx(mean(stays[(r["stage"], "before")]), abs=0.05)
        assert r["days_after"] == pytest.approx(mean(stays[(r["stage"], "after")]), abs=0.05)
    assert [r["days_before"] for r in got] == sorted((r["days_before"] for r in got), reverse=True)


def test_3_payback_month(con):
    benefit = cost = 0.0
    paid_back = None
    for r in rows(con, "SELECT period_start, benefit_total, cost_total FROM roi.rolling ORDER BY 1"):
        benefit, cost = benefit + r["benefit_total"], cost + r["cost_total"]
        if paid_back is None and r["period_start"] >= GO_LIVE.date() and benefit >= cost:
            paid_back = (r["period_start"], benefit, cost)
    (got,) = answer(con, 3)
    assert got["paid_back_in"] == paid_back[0] == dt.date(2025, 7, 1)  # "payback 7 months" in the README
    assert got["cumulative_benefit"] == pytest.approx(paid_back[1], abs=0.01)
    assert got["cumulative_cost"] == pytest.approx(paid_back[2], abs=0.01)


def _month(at: dt.datetime) -> dt.date:
    return dt.date(at.year, at.month, 1)


def test_4_revenue_against_expected(con, deals):
    won: dict[dt.date, float] = defaultdict(float)
    for d in deals:
        if d["is_won"] and WINDOW_START <= d["closed_at"] < CUTOFF:
            won[_month(d["closed_at"])] += d["amount_base"] or 0.0
    baseline = sum(v for m, v in won.items() if m < GO_LIVE.date()) / 12
    got = answer(con, 4)
    assert [r["period_start"] for r in got] == sorted(m for m in won if m >= GO_LIVE.date())
    assert len(got) == 22
    for r in got:
        assert r["actual"] == pytest.approx(won[r["period_start"]], abs=0.01)
        assert r["expected"] == pytest.approx(baseline, abs=0.01)
        assert r["incremental"] == pytest.approx(won[r["period_start"]] - baseline, abs=0.02)


def test_5_quarantined_rows_by_reason(con):
    counted = Counter((r["table_name"], r["reason"]) for r in rows(con, "SELECT * FROM quarantine.rejected_rows"))
    got = answer(con, 5)
    assert {(r["table_name"], r["reason"]): r["rows"] for r in got} == counted
    # What `crm-roi demo` prints: deals 7, finance_gl 1.
    assert sum(r["rows"] for r in got if r["table_name"] == "deals") == 7
    assert [r["table_name"] for r in got].count("finance_gl") == 1


def test_6_top_reps_since_go_live(con, deals):
    revenue: dict[str, list[float | None]] = defaultdict(list)
    for d in deals:
        if d["is_won"] and GO_LIVE <= d["closed_at"] < CUTOFF:
            revenue[d["owner_id"]].append(d["amount_base"])
    ranked = sorted(revenue, key=lambda rep: (-sum(a or 0 for a in revenue[rep]), rep))[:10]
    got = answer(con, 6)
    assert [r["rep"] for r in got] == ranked
    for r in got:
        amounts = [a for a in revenue[r["rep"]] if a is not None]
        assert r["deals_won"] == len(revenue[r["rep"]])
        assert r["revenue_won"] == pytest.approx(sum(amounts), abs=0.01)
        assert r["avg_deal_size"] == pytest.approx(sum(amounts) / len(amounts), abs=0.01)


def test_7_roi_at_quarter_ends(con):
    rolling = rows(con, "SELECT period_start, benefit_total, cost_total FROM roi.rolling ORDER BY 1")
    expected = {}
    for n, r in enumerate(rolling):
        if r["period_start"].month % 3:
            continue
        b, c = sum(x["benefit_total"] for x in rolling[:n + 1]), sum(x["cost_total"] for x in rolling[:n + 1])
        year_ago = r["period_start"].replace(year=r["period_start"].year - 1)
        window = [x for x in rolling[:n + 1] if x["period_start"] > year_ago]
        tb, tc = sum(x["benefit_total"] for x in window), sum(x["cost_total"] for x in window)
        expected[r["period_start"]] = (100 * (b - c) / c, 100 * (tb - tc) / tc)
    got = answer(con, 7)
    assert [r["quarter_last_month"] for r in got] == sorted(expected)
    assert got[0]["quarter_last_month"] == dt.date(2024, 12, 1)
    for r in got:
        assert r["roi_pct"] == pytest.approx(expected[r["quarter_last_month"]][0], abs=0.05)
        assert r["trailing_12m_roi_pct"] == pytest.approx(expected[r["quarter_last_month"]][1], abs=0.05)


def test_8_crm_cost_by_year_and_category(con):
    cost: dict[tuple[int, str], float] = defaultdict(float)
    for g in rows(con, "SELECT * FROM staging.finance_gl"):
        if (g["category"] or "").startswith("crm_") and g["posted_on"] <= dt.date(2026, 10, 31):
            cost[(g["posted_on"].year, g["category"])] += g["amount_base"]
    got = answer(con, 8)
    assert {(r["year"], r["category"]): r["cost"] for r in got} == pytest.approx(cost, abs=0.01)
    # The demo's ledger opens the CRM's costs with 15,000 of implementation in Oct 2024.
    assert {r["year"] for r in got} == {2024, 2025, 2026}
    assert cost[(2024, "crm_implementation")] >= 15000


def test_9_kpis_that_moved_most(con):
    periodic = rows(con, "SELECT * FROM kpi.periodic WHERE is_complete ORDER BY period_start DESC")[:12]
    (baseline,) = rows(con, "SELECT * FROM kpi.baseline")
    expected = {}
    for kpi in KPI_COLUMNS:
        values = [p[kpi] for p in periodic if p[kpi] is not None]
        if baseline[kpi] in (None, 0) or not values:
            continue
        expected[kpi] = mean(values) / baseline[kpi] - 1
    got = answer(con, 9)
    assert {r["kpi"] for r in got} == set(expected)
    for r in got:
        assert r["change"] == pytest.approx(expected[r["kpi"]], abs=5e-5)
    assert [abs(r["change"]) for r in got] == sorted((abs(r["change"]) for r in got), reverse=True)


def test_10_open_pipeline_at_the_cut_off(con, deals):
    open_deals: dict[str, list[float]] = defaultdict(list)
    for d in deals:
        if d["created_at"] < CUTOFF and (d["closed_at"] is None or d["closed_at"] >= CUTOFF):
            open_deals[d["stage"]].append(d["amount_base"] or 0.0)
    got = answer(con, 10)
    assert {r["stage"]: r["open_deals"] for r in got} == {s: len(v) for s, v in open_deals.items()}
    assert {r["stage"]: r["open_value"] for r in got} == pytest.approx(
        {s: sum(v) for s, v in open_deals.items()}, abs=0.01)
    assert sum(r["open_deals"] for r in got) > 0
