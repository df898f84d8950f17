"""The Dagster code location: assets by layer, the nightly job and its schedules.

`dagster dev`, `dg dev`, `dagster job execute` and `dg launch` all load `defs`. The
config file is read when Dagster loads the code location, not when this module is
imported; a broken config fails that load with its one-line error, shown in the UI.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import dagster as dg

from pipelines.assets.api import api_assets, api_deps_by_table
from pipelines.assets.marts import mart_assets
from pipelines.assets.raw import raw_assets
from pipelines.assets.report import REPORT_KEY, report
from pipelines.assets.staging import staging_assets
from pipelines.config import Settings, load_settings
from pipelines.logs import file_log
from pipelines.resources import CrmRoi
from pipelines.sensors import nightly_failure_alert

# A missed night shows in the UI: KPI and ROI tables older than a day and a bit are stale.
NIGHTLY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=25))


def _cross_cutting(owners: list[str]) -> Callable[[dg.AssetSpec], dg.AssetSpec]:
    """Owners, kinds and freshness applied once, by layer, rather than repeated on every asset.

    Every asset but the report writes the DuckDB files; staging rows pass a Pandera contract;
    KPI, ROI and what is published from them go stale after a missed night.
    """
    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        kinds = set() if spec.key == REPORT_KEY else {"duckdb"}
        if spec.group_name == "staging":
            kinds.add("pandera")
        spec = spec.merge_attributes(owners=owners, kinds=kinds)
        if spec.group_name in ("kpi", "roi", "publish"):
            spec = spec.replace_attributes(freshness_policy=NIGHTLY_FRESHNESS)
        return spec

    return apply


def full_reload_config(assets: list[dg.AssetsDefinition]) -> dict:
    """Run config that reloads `assets` (raw assets, which take a `full_reload` flag) from scratch."""
    return {"ops": {asset.op.name: {"config": {"full_reload": True}} for asset in assets}}


def _prefixed(assets: list[dg.AssetsDefinition], prefix: str) -> list[dg.AssetsDefinition]:
    """The same assets under `prefix/` (their deps and checks too), so demo runs stay apart in the UI."""
    keys = {key: key.with_prefix(prefix) for asset in assets for key in asset.keys}
    return [asset.with_attributes(asset_key_replacements=keys) for asset in assets]


def build_defs(settings: Settings, key_prefix: str | None = None) -> dg.Definitions:
    """Definitions bound to one validated config; `key_prefix` sets its assets apart (the demo's)."""
    # Every step writes the one DuckDB file, so steps run one at a time anyway:
    # the in-process executor saves a Python start-up per step (seconds each).
    nightly = dg.define_asset_job(
        "nightly",
        selection=dg.AssetSelection.all(),
        description="Load new export files, rebuild staging, KPI and ROI tables.",
        executor_def=dg.in_process_executor,
    )
    schedules = [dg.ScheduleDefinition(
        name="nightly_schedule", job=nightly, cron_schedule=settings.schedule_cron, execution_timezone="UTC",
    )]
    api = api_assets(settings)
    if settings.full_sync_cron:
        schedules.append(dg.ScheduleDefinition(
            name="full_sync_schedule",
            job=nightly,
            cron_schedule=settings.full_sync_cron,
            execution_timezone="UTC",
            run_config=full_reload_config(api),
            description="The nightly job with every API stream read in full: marks deleted what the CRM purged.",
        ))
    assets = dg.map_asset_specs(_cross_cutting(settings.owners),
                                [*raw_assets, *api, *staging_assets(api_deps_by_table(settings)), *mart_assets, report])
    return dg.Definitions(
        assets=_prefixed(assets, key_prefix) if key_prefix else assets,
        jobs=[nightly],
        schedules=schedules,
        sensors=[nightly_failure_alert],
        resources={"crm_roi": CrmRoi(settings)},
        loggers={"file": file_log},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location for the config file of CRM_ROI_CONFIG, else ./crm_roi.yaml."""
    return build_defs(load_settings())
