"""Staging layer: typed, deduplicated, currency-converted rows; bad rows quarantined."""

import time

import dagster as dg

from pipelines.assets.raw import POOL
from pipelines.checks import check_specs, run_checks
from pipelines.logs import log_event
from pipelines.metadata import table_metadata
from pipelines.resources import CrmRoi
from pipelines.transform import STAGING_TABLES, build_staging

# Which raw streams (and staging tables) each staging table reads.
_UPSTREAM = {
    "fx_rates": [["raw", "fx_rates"]],
    "deals": [["raw", "deals"], ["staging", "fx_rates"]],
    "deal_stage_history": [["raw", "deal_stage_history"]],
    "customers": [["raw", "customers"]],
    "finance_gl": [["raw", "finance_gl"], ["staging", "fx_rates"]],
    "csat": [["raw", "csat"]],
    "crm_usage": [["raw", "crm_usage"]],
}


def _staging_asset(table: str, api_deps: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=["staging", table],
        deps=[*(dg.AssetKey(k) for k in _UPSTREAM[table]), *api_deps],
        group_name="staging",
        kinds={"duckdb"},
        pool=POOL,
        check_specs=check_specs(table),
        description=(
            f"`staging.{table}`: one row per key from raw.{table}, typed, in UTC, by the row rules "
            f"in sql/staging/{table}.sql. Rows failing a rule go to quarantine.rejected_rows "
            "with their reasons; all other rows load."
        ),
    )
    def staging_table(context: dg.AssetExecutionContext, crm_roi: CrmRoi) -> dg.MaterializeResult:
        started = time.monotonic()
        with crm_roi.warehouse() as (_, con):
            result = build_staging(con, table)
            if result.rejected:
                context.log.warning(f"staging.{table}: {result.rejected} row(s) quarantined")
            checks = run_checks(con, table)
            log_event(context, "staged", table=table, rows_out=result.rows, quarantined=result.rejected,
                      duration_s=round(time.monotonic() - started, 3))
            metadata = table_metadata(con, f"staging.{table}", result.rows)
        return dg.MaterializeResult(
            metadata={**metadata, "quarantined_rows": result.rejected},
            check_results=checks,
        )

    return staging_table


def staging_assets(api_deps: dict[str, list[dg.AssetKey]]) -> list[dg.AssetsDefinition]:
    """The staging tables; `api_deps` adds the API assets that feed each raw table."""
    return [_staging_asset(table, api_deps.get(table, [])) for table in STAGING_TABLES]
