"""The short run summary printed by `crm-roi run` and `crm-roi demo`."""

from __future__ import annotations

import duckdb

from pipelines.config import Settings
from pipelines.report import PAGE_NAME, default_report_dir


def summary_lines(settings: Settings, files: dict[str, dict[str, list[str]]]) -> list[str]:
    """What was read, loaded and rejected, and the ROI headline, from the analysts' copy.

    `files`: per files source, the files this run loaded and those skipped as unchanged.
    """
    with duckdb.connect(str(settings.published_path), read_only=True) as con:
        periods, complete = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE is_complete) FROM kpi.periodic"
        ).fetchone()
        loaded = con.execute("SELECT count(*) FROM staging.deals").fetchone()[0]
        rejected = con.execute(
            "SELECT table_name, count(*) FROM quarantine.rejected_rows GROUP BY ALL ORDER BY 1"
        ).fetchall()
        roi = con.execute(
            "SELECT cumulative_benefit, cumulative_cost, roi, roi_pct, payback_period_months, npv, "
            "counterfactual_method, incremental_revenue, roi_p05, roi_p95 FROM roi.summary"
        ).fetchone()
    benefit, cost, roi_x, roi_pct, payback, npv, method, incremental, roi_low, roi_high = roi

    def money(v: float | None) -> str:
        return "n/a" if v is None else f"{v:,.0f} {settings.base_currency}"

    quarantined = ", ".join(f"{t} {n}" for t, n in rejected) or "none"
    read = [f"files            {source}: {len(names['loaded'])} loaded, {len(names['unchanged'])} unchanged"
            for source, names in sorted(files.items())]
    return [
        *read,
        f"periods          {periods} {settings.period}s ({complete} complete), as of {settings.effective_as_of}",
        f"deals loaded     {loaded:,}; quarantined rows: {quarantined}",
        f"benefit / cost   {money(benefit)} / {money(cost)}",
        "ROI              " + ("n/a (no CRM cost yet)" if roi_x is None else f"{roi_x:.2f}x ({roi_pct:.1f} %)"),
        "ROI 90 % range   " + ("n/a" if roi_low is None
                                 else f"{roi_low:.2f}x .. {roi_high:.2f}x (bootstrap over won deals)"),
        f"counterfactual   {method}: incremental revenue {money(incremental)}",
        "payback          " + ("not reached" if payback is None else f"{payback:g} months after go-live"),
        f"NPV              {money(npv)}",
        f"tables           {settings.published_path} (schemas kpi, roi, staging, quarantine)",
        f"report           {default_report_dir(settings.published_path) / PAGE_NAME}",
    ]
