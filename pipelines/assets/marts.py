"""KPI and ROI tables: recomputed in full each run, because CRM history gets restated.

One asset per KPI and ROI table of the registry, upstream read from its SQL; the
analysts' copy is published last.
"""

import dagster as dg
import duckdb

from pipelines.assets import POOL, table_key
from pipelines.checks import keep_previous_version, run_sql_checks, sql_check_specs
from pipelines.metadata import markdown_preview, table_metadata
from pipelines.models import REGISTRY, Table
from pipelines.publish import publish
from pipelines.resources import CrmRoi
from pipelines.transform import build_mart


def _headline(con: duckdb.DuckDBPyConnection, currency: str) -> dict:
    """The ROI headline, rounded for reading in the UI ("2.89 (289 %)", "509,715 USD", "7 months")."""
    roi, roi_pct, payback, npv, benefit, cost = con.execute(
        "SELECT roi, roi_pct, payback_period_months, npv, cumulative_benefit, cumulative_cost FROM roi.summary"
    ).fetchone()
    return {
        "roi": "n/a (no CRM cost yet)" if roi is None else f"{roi:.2f} ({roi_pct:.0f} %)",
        "payback": "not reached" if payback is None else f"{payback:g} months after go-live",
        "npv": "n/a" if npv is None else f"{npv:,.0f} {currency}",
        "benefit_and_cost": "n/a" if cost is None else f"{benefit:,.0f} / {cost:,.0f} {currency}",
    }


def _mart_asset(spec: Table) -> dg.AssetsDefinition:
    @dg.asset(
        key=table_key(spec.name),
        deps=[table_key(t) for t in sorted({p for read in spec.reads for p in REGISTRY.producers(read)})],
        group_name=spec.schema,
        pool=POOL,
        check_specs=sql_check_specs(spec),
        description=f"`{spec.name}`: {spec.description} Model: sql/{spec.model}.sql.",
    )
    def mart(crm_roi: dg.ResourceParam[CrmRoi]) -> dg.MaterializeResult:
        with crm_roi.warehouse() as con:
            keep_previous_version(con, spec)
            rows = build_mart(con, spec.name)
            metadata = {**table_metadata(con, spec.name, rows), "preview": markdown_preview(con, spec.preview)}
            if spec.name == "roi.summary":
                metadata |= _headline(con, crm_roi.settings.base_currency)
            checks = run_sql_checks(con, spec)
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return mart


@dg.asset(
    key=["publish", "analyst_copy"],
    deps=[table_key(t.name) for t in REGISTRY.marts],
    group_name="publish",
    pool=POOL,
    description=(
        "The file analysts open (`<duckdb_path>.published.duckdb`): the staging, quarantine, KPI "
        "and ROI tables, copied into a new file and swapped in atomically at the end of each run, "
        "so readers never block the run and never see a half-built state."
    ),
)
def analyst_copy(context: dg.AssetExecutionContext, crm_roi: dg.ResourceParam[CrmRoi]) -> dg.MaterializeResult:
    settings = crm_roi.settings
    with crm_roi.warehouse() as con:
        counts = publish(con, settings.duckdb_path, settings.published_path, context.run.run_id)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(settings.published_path)),
        "tables": len(counts),
        "rows": dg.MetadataValue.json(counts),
    })


mart_assets = [*(_mart_asset(spec) for spec in REGISTRY.marts), analyst_copy]
