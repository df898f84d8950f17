"""The source document's worked example, end to end through the SQL models."""

import pytest

from tests.conftest import deal, gl, rows


def test_benefit_100000_cost_20000_gives_roi_4(project):
    # Baseline 2024: no revenue. January 2025 (after go-live): one deal won for
    # 100,000 and 20,000 of implementation + training. Net ROI (100k-20k)/20k = 4.
    con = project(
        deals=[deal("D1", "2025-01-05", "2025-01-20", won=True, amount="100000")],
        finance=[gl("G1", "2025-01-10", "6110", "15000"), gl("G2", "2025-01-12", "6120", "5000")],
        as_of="2025-01-31",
    )
    (summary,) = rows(con, "SELECT * FROM roi.summary")
    assert summary["roi"] == pytest.approx(4.0)
    assert summary["roi_pct"] == pytest.approx(400.0)
    assert summary["gross_return_ratio"] == pytest.approx(5.0)
    assert summary["cumulative_benefit"] == pytest.approx(100_000)
    assert summary["cumulative_cost"] == pytest.approx(20_000)
    assert summary["payback_period_months"] == pytest.approx(1.0)
