"""The Dagster code location: assets by layer, the nightly job and its schedules.

`dagster dev`, `dg dev`, `dagster job execute` and `dg launch` all load `defs`.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from pipelines.assets.api import api_assets, api_deps_by_table
from pipelines.assets.marts import mart_assets
from pipelines.assets.raw import raw_assets
from pipelines.assets.staging import staging_assets
from pipelines.config import ConfigError, Settings, config_path, load_settings
from pipelines.resources import CrmRoi
from pipelines.sensors import nightly_failure_alert

DEFAULT_CRON = "0 2 * * *"
# A missed night shows in the UI: KPI and ROI tables older than a day and a bit are stale.
NIGHTLY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=25))


def _fresh_nightly(spec: dg.AssetSpec) -> dg.AssetSpec:
    """Freshness applied once, by layer, rather than repeated on every asset."""
    if spec.group_name in ("kpi", "roi", "publish"):
        return spec.replace_attributes(freshness_policy=NIGHTLY_FRESHNESS)
    return spec


def _settings_or_none(config_file: str) -> Settings | None:
    """A broken config fails the run with its one-line error, not the code location's load."""
    try:
        return load_settings(config_file)
    except ConfigError:
        return None


def build_defs(config_file: str | None = None) -> dg.Definitions:
    """Definitions bound to one config file (the CLI's --config, else CRM_ROI_CONFIG or ./crm_roi.yaml)."""
    config_file = str(config_path(config_file))
    settings = _settings_or_none(config_file)
    # Every step writes the one DuckDB file, so steps run one at a time anyway:
    # the in-process executor saves a Python start-up per step (seconds each).
    nightly = dg.define_asset_job(
        "nightly",
        selection=dg.AssetSelection.all(),
        description="Load new export files, rebuild staging, KPI and ROI tables.",
        executor_def=dg.in_process_executor,
    )
    schedules = [dg.ScheduleDefinition(
        name="nightly_schedule",
        job=nightly,
        cron_schedule=settings.schedule_cron if settings else DEFAULT_CRON,
        execution_timezone="UTC",
    )]
    api = api_assets(settings)
    if settings and settings.full_sync_cron:
        schedules.append(dg.ScheduleDefinition(
            name="full_sync_schedule",
            job=nightly,
            cron_schedule=settings.full_sync_cron,
            execution_timezone="UTC",
            run_config={"ops": {asset.op.name: {"config": {"full_reload": True}} for asset in api}},
            description="The nightly job with every API stream read in full: marks deleted what the CRM purged.",
        ))
    return dg.Definitions(
        assets=[*raw_assets, *api, *staging_assets(api_deps_by_table(settings)),
                *dg.map_asset_specs(_fresh_nightly, mart_assets)],
        jobs=[nightly],
        schedules=schedules,
        sensors=[nightly_failure_alert],
        resources={"crm_roi": CrmRoi(config_file=config_file)},
    )


defs = build_defs()
