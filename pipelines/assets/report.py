"""The ROI report, last in the nightly job: made from the analysts' copy once it is published.

Its metadata shows the main charts in the Dagster UI (inline images, so the UI needs no
file access) and where the HTML page is.
"""

import base64

import dagster as dg

from pipelines.report import ReportFiles, default_report_dir, write_report
from pipelines.resources import CrmRoi

REPORT_KEY = dg.AssetKey(["publish", "report"])
# The charts shown in the UI: the ROI story at a glance; the page has the rest.
UI_CHARTS = ("payback", "roi", "revenue")


def _inline_charts(files: ReportFiles) -> str:
    """The UI's charts as markdown images with SVG data URIs: the event log keeps every run's
    metadata, and an SVG is a third of the PNG's size."""
    parts = []
    for name in UI_CHARTS:
        encoded = base64.b64encode(files.svgs[name].encode("utf-8")).decode("ascii")
        parts.append(f"**{files.titles[name]}**\n\n![{files.titles[name]}](data:image/svg+xml;base64,{encoded})")
    return "\n\n".join(parts)


@dg.asset(
    key=REPORT_KEY,
    deps=[dg.AssetKey(["publish", "analyst_copy"])],
    group_name="publish",
    kinds={"html", "report"},
    description=(
        "The ROI report for finance and sales leaders: one self-contained HTML page (opens offline) and a "
        "PNG per chart, in `<duckdb_path stem>_report/` beside the analysts' copy it is made from."
    ),
)
def report(crm_roi: dg.ResourceParam[CrmRoi]) -> dg.MaterializeResult:
    published = crm_roi.settings.published_path
    files = write_report(published, default_report_dir(published))
    metadata = {
        "html": dg.MetadataValue.path(str(files.html)),
        "open": dg.MetadataValue.url(files.html.resolve().as_uri()),
        "pngs": dg.MetadataValue.json({name: str(path) for name, path in files.images.items()}),
    }
    # The inline charts are half of what a run adds to the event log (docs/scale.md): with many
    # tenants in one instance's Postgres, a tenant's report is its page, not its event log.
    if crm_roi.tenant is None:
        metadata = {"charts": dg.MetadataValue.md(_inline_charts(files)), **metadata}
    return dg.MaterializeResult(metadata=metadata)
