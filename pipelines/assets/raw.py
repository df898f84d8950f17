"""Raw layer: each stream's export files landed as text, once per file."""

import time

import dagster as dg

from connectors.contract import CANONICAL_STREAMS
from pipelines.assets import POOL
from pipelines.logs import log_event
from pipelines.raw_files import load_stream, required_streams_present, stream_inputs, unmatched_files
from pipelines.resources import CrmRoi


class RawLoadConfig(dg.Config):
    full_reload: bool = False
    """Drop what was loaded from the files and load every file again (after an export was corrected)."""


def _raw_asset(stream: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=["raw", stream],
        group_name="raw",
        kinds={"csv"},
        pool=POOL,
        description=(
            f"`raw.{stream}`: the {stream} export files of every source, as landed "
            "(canonical names, each value parsed once into its column's type; a row with a value that did not "
            "parse keeps its text in _text; with _source, _file, _batch_id). "
            "Each file is loaded once, tracked by name and content hash in raw.loaded_files."
        ),
    )
    def raw_stream(
        context: dg.AssetExecutionContext, config: RawLoadConfig, crm_roi: dg.ResourceParam[CrmRoi]
    ) -> dg.MaterializeResult:
        started = time.monotonic()
        settings = crm_roi.settings
        with crm_roi.warehouse() as con:
            required_streams_present(settings)
            files, rows_loaded = {}, 0
            for spec in stream_inputs(settings, stream):
                result = load_stream(con, spec, full_reload=config.full_reload)
                log_event(context, "files_loaded", source=spec.source, stream=stream,
                          files=len(result.files_loaded), files_skipped=len(result.files_skipped),
                          rows_in=result.rows_loaded)
                files[spec.source] = {"loaded": result.files_loaded, "unchanged": result.files_skipped}
                rows_loaded += result.rows_loaded
            rows = con.execute(f"SELECT count(*) FROM raw.{stream}").fetchone()[0]  # noqa: S608 (a known stream)
        metadata = {
            "dagster/row_count": rows,
            "rows_loaded": rows_loaded,
            # Per source: the files this run loaded, and those skipped as loaded before and unchanged.
            "files": dg.MetadataValue.json(files),
            "duration_s": round(time.monotonic() - started, 3),
        }
        if stream == "deals":  # the one stream every config reads: where a folder's stray exports are named
            metadata["files_matching_no_stream"] = dg.MetadataValue.json(unmatched_files(settings))
        return dg.MaterializeResult(metadata=metadata)

    return raw_stream


raw_assets = [_raw_asset(stream) for stream in CANONICAL_STREAMS]
