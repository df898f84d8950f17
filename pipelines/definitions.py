"""The Dagster code location: assets by layer, the nightly job and its schedules.

`dagster dev`, `dg dev`, `dagster job execute` and `dg launch` all load `defs`. The
config file is read when Dagster loads the code location, not when this module is
imported; a broken config fails that load with its one-line error, shown in the UI.
With a tenants file (CRM_ROI_TENANTS) the location serves every tenant, each asset
partitioned by tenant, and each tenant's config is read by its own runs (docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import dagster as dg

from connectors.contract import API_STREAMS
from pipelines.assets.api import api_assets, api_deps_by_table, tenant_api_assets
from pipelines.assets.marts import mart_assets
from pipelines.assets.raw import raw_assets
from pipelines.assets.report import REPORT_KEY, report
from pipelines.assets.staging import staging_assets
from pipelines.config import Settings, load_settings
from pipelines.logs import file_log
from pipelines.resources import CrmRoi, tenant_resource
from pipelines.sensors import nightly_failure_alert, tenants_sensor
from pipelines.tenants import TENANT_PARTITIONS, Tenants, tenants_from_env

# The tag of the scheduled tenant runs: the run queue caps how many run at once (deploy/dagster.yaml).
NIGHTLY_TAG = "crm_roi/schedule"
# A missed night shows in the UI: KPI and ROI tables older than a day and a bit are stale.
NIGHTLY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=25))


def _cross_cutting(owners: list[str], partitions_def: dg.PartitionsDefinition | None = None,
                   ) -> Callable[[dg.AssetSpec], dg.AssetSpec]:
    """Owners, kinds, freshness (and the tenant partitions) applied once, by layer, rather than on every asset.

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
        if partitions_def is not None:
            spec = spec.replace_attributes(partitions_def=partitions_def)
        return spec

    return apply


def full_reload_config(assets: list[dg.AssetsDefinition]) -> dict:
    """Run config that reloads `assets` (raw assets, which take a `full_reload` flag) from scratch."""
    return {"ops": {asset.op.name: {"config": {"full_reload": True}} for asset in assets}}


def _prefixed(assets: list[dg.AssetsDefinition], prefix: str) -> list[dg.AssetsDefinition]:
    """The same assets under `prefix/` (their deps and checks too), so demo runs stay apart in the UI."""
    keys = {key: key.with_prefix(prefix) for asset in assets for key in asset.keys}
    return [asset.with_attributes(asset_key_replacements=keys) for asset in assets]


def _nightly_job(description: str = "") -> dg.UnresolvedAssetJobDefinition:
    # Every step writes the one DuckDB file, so steps run one at a time anyway:
    # the in-process executor saves a Python start-up per step (seconds each).
    return dg.define_asset_job(
        "nightly",
        selection=dg.AssetSelection.all(),
        description="Load new export files, rebuild staging, KPI and ROI tables." + description,
        executor_def=dg.in_process_executor,
    )


def build_defs(settings: Settings, key_prefix: str | None = None) -> dg.Definitions:
    """Definitions bound to one validated config; `key_prefix` sets its assets apart (the demo's)."""
    nightly = _nightly_job()
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
    api_deps = api_deps_by_table([(name, source.kind) for name, source in settings.api_sources()])
    assets = dg.map_asset_specs(_cross_cutting(settings.owners),
                                [*raw_assets, *api, *staging_assets(api_deps), *mart_assets, report])
    return dg.Definitions(
        assets=_prefixed(assets, key_prefix) if key_prefix else assets,
        jobs=[nightly],
        schedules=schedules,
        sensors=[nightly_failure_alert],
        resources={"crm_roi": CrmRoi(settings)},
        loggers={"file": file_log},
    )


def tenant_assets(owners: list[str]) -> list[dg.AssetsDefinition]:
    """The asset graph every tenant shares, partitioned by tenant: one asset per stream of every CRM kind."""
    api = tenant_api_assets()
    api_deps = api_deps_by_table([(kind, kind) for kind in API_STREAMS])
    return dg.map_asset_specs(_cross_cutting(owners, TENANT_PARTITIONS),
                              [*raw_assets, *api, *staging_assets(api_deps), *mart_assets, report])


def build_tenant_defs(tenants: Tenants) -> dg.Definitions:
    """Definitions serving every tenant of the tenants file: one run per tenant partition.

    The graph does not depend on any tenant's config (a tenant's run binds its settings when it
    starts), so adding a tenant needs no reload of the code location, only the sensor's tick.
    """
    nightly = _nightly_job(" One run per tenant partition.")

    @dg.schedule(name="nightly_schedule", job=nightly, cron_schedule=tenants.schedule_cron,
                 execution_timezone="UTC", description="The nightly job for every tenant: a run per tenant partition.")
    def nightly_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        return [dg.RunRequest(run_key=tenant, partition_key=tenant, tags={NIGHTLY_TAG: "nightly"})
                for tenant in context.instance.get_dynamic_partitions(TENANT_PARTITIONS.name)]

    return dg.Definitions(
        assets=tenant_assets(list(tenants.owners)),
        jobs=[nightly],
        schedules=[nightly_schedule],
        sensors=[nightly_failure_alert, tenants_sensor(tenants.source)],
        resources={"crm_roi": tenant_resource(tenants)},
        loggers={"file": file_log},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location for the tenants file of CRM_ROI_TENANTS, else for the config file of CRM_ROI_CONFIG
    (else ./crm_roi.yaml)."""
    tenants = tenants_from_env()
    return build_tenant_defs(tenants) if tenants else build_defs(load_settings())
