"""The ROI report: one self-contained HTML page and a PNG per chart, for people who will not open a table.

The page carries everything inline (the Vega-Lite runtime, the chart data, the styles),
so it opens offline, from an e-mail attachment or a file share, and sends no request
anywhere. The charting libraries are imported only when a report is written: a nightly
run's start-up, and every other command, does not pay for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipelines.report.data import ReportError, read_report_data

__all__ = ["ReportError", "ReportFiles", "chart_svg", "default_report_dir", "write_report"]

PAGE_NAME = "roi_report.html"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    images: dict[str, Path]  # chart name -> its PNG
    titles: dict[str, str]  # chart name -> its heading
    specs: dict[str, dict]  # chart name -> its Vega-Lite spec


def vl_version() -> str:
    """The Vega-Lite release Altair writes specs for (e.g. '6.4'), for vl-convert to render them with."""
    import altair as alt

    return ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


def chart_svg(spec: dict) -> str:
    """One chart as SVG text: a third of its PNG's size, for the Dagster UI's metadata."""
    import vl_convert as vlc

    return vlc.vegalite_to_svg(spec, vl_version=vl_version())


def default_report_dir(published: Path) -> Path:
    """Beside the analysts' copy: crm_roi.published.duckdb -> crm_roi_report/."""
    stem = published.name.removesuffix(".duckdb").removesuffix(".published")
    return published.with_name(f"{stem}_report")


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element: CRM text (a stage name) cannot close the element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_report(published: Path, out: Path, png_scale: float = 1.0) -> ReportFiles:
    """Write roi_report.html and one PNG per chart into `out`, from the analysts' copy `published`."""
    import jinja2
    import vl_convert as vlc

    from pipelines.report.charts import build_charts
    from pipelines.report.story import tell

    data = read_report_data(published)
    currency = data.assumptions.get("base_currency") or "USD"
    charts = build_charts(data, currency)
    out.mkdir(parents=True, exist_ok=True)
    version = vl_version()
    images = {}
    for chart in charts:
        path = out / f"{chart.name}.png"
        path.write_bytes(vlc.vegalite_to_png(chart.spec, scale=png_scale, vl_version=version))
        images[chart.name] = path
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pipelines.report", "."), autoescape=True, keep_trailing_newline=True,
    )
    bundle = vlc.javascript_bundle(vl_version=version).replace("</script", "<\\/script")
    html = environment.get_template("page.html.j2").render(
        story=tell(data),
        charts=charts,
        source=published.name,
        vega_bundle=jinja2.utils.markupsafe.Markup(bundle),
        specs=jinja2.utils.markupsafe.Markup(_script_json({c.name: c.spec for c in charts})),
    )
    page = out / PAGE_NAME
    page.write_text(html, encoding="utf-8")
    return ReportFiles(page, images, {c.name: c.title for c in charts}, {c.name: c.spec for c in charts})
