"""Raw layer, live CRMs: one asset per API source stream, synced incrementally.

A failing source does not stop the run: its asset records what it committed
before the failure, and its `sync_succeeded` check fails, so the UI shows the
failure while the other sources' data still reaches staging.
"""

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


def _api_asset(source: str, kind: str, stream: str) -> dg.AssetsDefinition:
    key = api_asset_key(source, stream)
    tables = ", ".join(f"raw.{t}" for t in API_STREAM_TABLES[stream])

    @dg.asset(
        key=key,
        group_name="raw",
        kinds={kind},
        pool=POOL,
        check_specs=[dg.AssetCheckSpec("sync_succeeded", asset=key,
                                       description="The last sync reached the end of the stream.")],
        description=(
            f"`{source}` {stream} from the {kind} API into {tables}: incremental from the cursor "
            "in raw.sync_state (full on `full_reload`), upserted by key, one transaction per page. "
            "A full sync then marks deleted what the CRM no longer returns."
        ),
    )
    def api_stream(
        context: dg.AssetExecutionContext, config: RawLoadConfig, crm_roi: dg.ResourceParam[CrmRoi]
    ) -> dg.MaterializeResult:
        with crm_roi.warehouse() as con:
            connector = dict(crm_roi.settings.api_sources())[source].open()
            try:
                result = sync_stream(con, source, connector, stream, full=config.full_reload)
            finally:
                connector.close()
        if result.error:
            context.log.error(f"{source}/{stream} stopped: {result.error}")
        stats = connector.stats
        log_event(context, "api_synced", source=source, stream=stream, requests=stats.requests,
                  retries=stats.retries, pages=result.pages, rows_new=sum(result.new.values()),
                  rows_updated=sum(result.updated.values()), deleted=result.deleted, gone=sum(result.gone.values()),
                  duration_s=result.duration_s, error=result.error)
        return dg.MaterializeResult(
            metadata={
                "requests": stats.requests,
                "retries": stats.retries,
                "throttled_s": round(stats.throttled_seconds, 3),
                "pages": result.pages,
                "records_new": sum(result.new.values()),
                "records_updated": sum(result.updated.values()),
                "records_deleted": result.deleted,
                # Keys a full sync no longer found (purged or hard-deleted by the vendor), now marked deleted.
                "records_gone": sum(result.gone.values()),
                "cursor_before": result.cursor_before or "(full sync)",
                "cursor_after": result.cursor_after or "",
                "duration_s": result.duration_s,
            },
            check_results=[dg.AssetCheckResult(
                passed=result.error is None,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"error": result.error or ""},
            )],
        )

    return api_stream


def api_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """One asset per stream of every API source in the config."""
    return [
        _api_asset(name, config.kind, stream)
        for name, config in settings.api_sources()
        for stream in API_STREAMS[config.kind]
    ]


def api_deps_by_table(settings: Settings) -> dict[str, list[dg.AssetKey]]:
    """Which API assets feed each raw table, so staging waits for them."""
    deps: dict[str, list[dg.AssetKey]] = {}
    for name, config in settings.api_sources():
        for stream in API_STREAMS[config.kind]:
            for table in API_STREAM_TABLES[stream]:
                deps.setdefault(table, []).append(api_asset_key(name, stream))
    return deps
