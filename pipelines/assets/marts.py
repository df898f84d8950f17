"""KPI and ROI tables: recomputed in full each run, because CRM history gets restated."""

import dagster as dg

from pipelines.assets.raw import POOL
from pipelines.metadata import markdown_preview, table_metadata
from pipelines.publish import publish
from pipelines.resources import CrmRoi
from pipelines.transform import STAGING_TABLES, build_mart

_STAGING = [dg.AssetKey(["staging", t]) for t in STAGING_TABLES]

_MARTS = {
    "kpi.periodic": (
        _STAGING,
        "One row per period from the baseline start to the period holding as_of: deals, win "
        "rate, revenue, deal size, sales cycle, churn and retention, CAC, satisfaction, "
        "adoption, operating and CRM cost.",
        "SELECT period_start, phase, is_complete, deals_won, win_rate, revenue_won, churn_rate, "
        "crm_cost FROM kpi.periodic ORDER BY period_start DESC",
    ),
    "kpi.baseline": (
        [dg.AssetKey(["kpi", "periodic"]), *_STAGING],
        "One row: the KPIs over the complete periods of the baseline window before go-live "
        "(flows as means per period, rates pooled).",
        "SELECT window_start, window_end, periods, deals_won, win_rate, revenue_won, churn_rate "
        "FROM kpi.baseline",
    ),
    "kpi.vs_baseline": (
        [dg.AssetKey(["kpi", "periodic"]), dg.AssetKey(["kpi", "baseline"])],
        "Every KPI of every period beside its baseline: value, baseline, delta, delta_pct.",
        "SELECT period_start, kpi, value, baseline, delta_pct FROM kpi.vs_baseline "
        "WHERE kpi IN ('revenue_won', 'win_rate', 'churn_rate') ORDER BY period_start DESC, kpi",
    ),
    "kpi.stage_durations": (
        [dg.AssetKey(["kpi", "periodic"]), dg.AssetKey(["staging", "deal_stage_history"]),
         dg.AssetKey(["staging", "deals"])],
        "Time in stage: per period and stage, how many deals left the stage and their median and "
        "mean days in it (from the stage history).",
        "SELECT period_start, stage, stage_exits, days_in_stage_median FROM kpi.stage_durations "
        "ORDER BY period_start DESC, stage",
    ),
    "roi.rolling": (
        [dg.AssetKey(["kpi", "periodic"]), dg.AssetKey(["kpi", "baseline"]),
         dg.AssetKey(["staging", "finance_gl"])],
        "One row per complete period from the earlier of go-live and the first CRM cost: "
        "benefits, costs, cumulative ROI, trailing-12-month ROI, NPV and payback.",
        "SELECT period_start, benefit_total, cost_total, cumulative_benefit, cumulative_cost, roi, "
        "payback_reached FROM roi.rolling ORDER BY period_start DESC",
    ),
    "roi.summary": (
        [dg.AssetKey(["roi", "rolling"]), dg.AssetKey(["kpi", "periodic"])],
        "The headline, one row: cumulative benefit and cost, ROI, ROI %, gross return ratio, "
        "payback period and NPV as of the run's cut-off.",
        "SELECT * FROM roi.summary",
    ),
}


def _headline(con) -> dict:
    row = con.execute("SELECT roi, roi_pct, payback_period_months, npv FROM roi.summary").fetchone()
    names = ("roi", "roi_pct", "payback_period_months", "npv")
    return {name: dg.MetadataValue.float(value) for name, value in zip(names, row, strict=True)
            if value is not None}


def _mart_asset(table: str) -> dg.AssetsDefinition:
    deps, description, preview = _MARTS[table]
    schema, name = table.split(".")

    @dg.asset(
        key=[schema, name],
        deps=deps,
        group_name=schema,
        kinds={"duckdb"},
        pool=POOL,
        description=f"`{table}`: {description} Model: sql/{schema}/{name}.sql.",
    )
    def mart(crm_roi: CrmRoi) -> dg.MaterializeResult:
        with crm_roi.warehouse() as (_, con):
            rows = build_mart(con, table)
            metadata = {**table_metadata(con, table, rows), "preview": markdown_preview(con, preview)}
            if table == "roi.summary":
                metadata |= _headline(con)
        return dg.MaterializeResult(metadata=metadata)

    return mart


@dg.asset(
    key=["publish", "analyst_copy"],
    deps=[dg.AssetKey(["roi", "summary"]), dg.AssetKey(["kpi", "vs_baseline"])],
    group_name="publish",
    kinds={"duckdb"},
    pool=POOL,
    description=(
        "The file analysts open (`<duckdb_path>.published.duckdb`): the staging, quarantine, KPI "
        "and ROI tables, copied into a new file and swapped in atomically at the end of each run, "
        "so readers never block the run and never see a half-built state."
    ),
)
def analyst_copy(crm_roi: CrmRoi) -> dg.MaterializeResult:
    with crm_roi.warehouse() as (settings, con):
        counts = publish(con, settings.duckdb_path, settings.published_path)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(settings.published_path)),
        "tables": len(counts),
        "rows": dg.MetadataValue.json(counts),
    })


mart_assets = [*(_mart_asset(table) for table in _MARTS), analyst_copy]
