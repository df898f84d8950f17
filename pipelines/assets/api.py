"""Raw layer, live CRMs: one asset per API source stream, synced incrementally.

A failing source does not stop the run: its asset records what it committed
before the failure, and its `sync_succeeded` check fails, so the UI shows the
failure while the other sources' data still reaches staging.
"""

from collections.abc import Callable
from contextlib import nullcontext

import dagster as dg

from connectors.contract import API_STREAM_TABLES, API_STREAMS
from pipelines.api_sync import sync_stream
from pipelines.assets import POOL
from pipelines.assets.raw import RawLoadConfig
from pipelines.config import Settings
from pipelines.logs import log_event
from pipelines.resources import CrmRoi


def api_asset_key(source: str, stream: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", f"{source}_{stream}"])


def _api_asset(name: str, kind: str, stream: str,
               sources_of: Callable[[Settings], list[str]]) -> dg.AssetsDefinition:
    """The asset `raw/<name>_<stream>`, syncing `stream` of the sources `sources_of` names in the run's settings.

    One config names its sources when the graph is built (one asset per source); with tenants the
    graph is the same for every tenant, so the asset of a CRM kind syncs whichever sources of that
    kind the run's tenant has, none included.
    """
    key = api_asset_key(name, stream)
    tables = ", ".join(f"raw.{t}" for t in API_STREAM_TABLES[stream])

    @dg.asset(
        key=key,
        group_name="raw",
        kinds={kind},
        pool=POOL,
        check_specs=[dg.AssetCheckSpec("sync_succeeded", asset=key,
                                       description="The last sync reached the end of the stream.")],
        description=(
            f"`{name}` {stream} from the {kind} API into {tables}: incremental from the cursor "
            "in raw.sync_state (full on `full_reload`), upserted by key, one transaction per page. "
            "A full sync then marks deleted what the CRM no longer returns."
        ),
    )
    def api_stream(
        context: dg.AssetExecutionContext, config: RawLoadConfig, crm_roi: dg.ResourceParam[CrmRoi]
    ) -> dg.MaterializeResult:
        configs = dict(crm_roi.settings.api_sources())
        sources = sources_of(crm_roi.settings)
        synced = []
        with crm_roi.warehouse() if sources else nullcontext() as con:
            for source in sources:
                connector = configs[source].open()
                try:
                    result = sync_stream(con, source, connector, stream, full=config.full_reload)
                finally:
                    connector.close()
                synced.append((source, result, connector.stats))
        for source, result, stats in synced:
            if result.error:
                context.log.error(f"{source}/{stream} stopped: {result.error}")
            log_event(context, "api_synced", source=source, stream=stream, requests=stats.requests,
                      retries=stats.retries, pages=result.pages, rows_new=sum(result.new.values()),
                      rows_updated=sum(result.updated.values()), deleted=result.deleted,
                      gone=sum(result.gone.values()), duration_s=result.duration_s, error=result.error)
        errors = [(source, result.error) for source, result, _ in synced if result.error]
        return dg.MaterializeResult(
            metadata={
                "sources": dg.MetadataValue.json(sources),
                "requests": sum(stats.requests for *_, stats in synced),
                "retries": sum(stats.retries for *_, stats in synced),
                "throttled_s": round(sum(stats.throttled_seconds for *_, stats in synced), 3),
                "pages": sum(result.pages for _, result, _ in synced),
                "records_new": sum(sum(result.new.values()) for _, result, _ in synced),
                "records_updated": sum(sum(result.updated.values()) for _, result, _ in synced),
                "records_deleted": sum(result.deleted for _, result, _ in synced),
                # Keys a full sync no longer found (purged or hard-deleted by the vendor), now marked deleted.
                "records_gone": sum(sum(result.gone.values()) for _, result, _ in synced),
                # One value per source, in the order of `sources`.
                "cursor_before": ", ".join(result.cursor_before or "(full sync)" for _, result, _ in synced),
                "cursor_after": ", ".join(result.cursor_after or "" for _, result, _ in synced),
                "duration_s": sum(result.duration_s for _, result, _ in synced),
            },
            check_results=[dg.AssetCheckResult(
                passed=not errors,
                severity=dg.AssetCheckSeverity.ERROR,
                # One source's error as it is; several name their source.
                metadata={"error": errors[0][1] if len(synced) == 1 and errors
                          else "; ".join(f"{source}: {error}" for source, error in errors)},
            )],
        )

    return api_stream


def api_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """One asset per stream of every API source in the config."""
    return [
        _api_asset(name, config.kind, stream, lambda _, name=name: [name])
        for name, config in settings.api_sources()
        for stream in API_STREAMS[config.kind]
    ]


def tenant_api_assets() -> list[dg.AssetsDefinition]:
    """One asset per stream of every CRM kind, syncing the run's tenant's sources of that kind."""
    return [
        _api_asset(kind, kind, stream,
                   lambda settings, kind=kind: [n for n, c in settings.api_sources() if c.kind == kind])
        for kind, streams in API_STREAMS.items()
        for stream in streams
    ]


def api_deps_by_table(named_kinds: list[tuple[str, str]]) -> dict[str, list[dg.AssetKey]]:
    """Which API assets (by name and CRM kind) feed each raw table, so staging waits for them."""
    deps: dict[str, list[dg.AssetKey]] = {}
    for name, kind in named_kinds:
        for stream in API_STREAMS[kind]:
            for table in API_STREAM_TABLES[stream]:
                deps.setdefault(table, []).append(api_asset_key(name, stream))
    return deps
