"""Staging layer: typed, deduplicated, currency-converted rows; bad rows quarantined.

One asset per staging table of the registry, upstream read from its SQL.
"""

import time

import dagster as dg

from pipelines.assets import POOL, table_key
from pipelines.checks import check_specs, run_checks
from pipelines.logs import log_event
from pipelines.metadata import table_metadata
from pipelines.models import REGISTRY, Table
from pipelines.resources import CrmRoi
from pipelines.transform import build_staging


def _staging_asset(spec: Table, api_deps: list[dg.AssetKey]) -> dg.AssetsDefinition:
    table = spec.short_name

    @dg.asset(
        key=table_key(spec.name),
        deps=[*(table_key(t) for t in sorted(spec.reads)), *api_deps],
        group_name="staging",
        pool=POOL,
        check_specs=check_specs(spec),
        description=(
            f"`{spec.name}`: {spec.description} Typed, in UTC, by the row rules in sql/{spec.model}.sql. "
            "Rows failing a rule go to quarantine.rejected_rows with their reasons; all other rows load."
        ),
    )
    def staging_table(context: dg.AssetExecutionContext, crm_roi: dg.ResourceParam[CrmRoi]) -> dg.MaterializeResult:
        started = time.monotonic()
        with crm_roi.warehouse() as con:
            result = build_staging(con, table)
            if result.rejected:
                context.log.warning(f"{spec.name}: {result.rejected} row(s) quarantined")
            checks = run_checks(con, spec, crm_roi.settings.rejected_share_limits())
            log_event(context, "staged", table=table, rows_out=result.rows, quarantined=result.rejected,
                      duration_s=round(time.monotonic() - started, 3))
            metadata = table_metadata(con, spec.name, result.rows)
        return dg.MaterializeResult(
            metadata={**metadata, "quarantined_rows": result.rejected},
            check_results=checks,
        )

    return staging_table


def staging_assets(api_deps: dict[str, list[dg.AssetKey]]) -> list[dg.AssetsDefinition]:
    """The staging tables; `api_deps` adds the API assets that feed each raw table."""
    return [_staging_asset(spec, api_deps.get(spec.short_name, [])) for spec in REGISTRY.staging]
