"""The ROI report: one self-contained HTML page and a PNG per chart, for people who will not open a table.

The page carries everything inline (the Vega-Lite runtime, the chart data, the styles),
so it opens offline, from an e-mail attachment or a file share, and sends no request
anywhere. The charting libraries are imported only when a report is written: a nightly
run's start-up, and every other command, does not pay for them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.report.data import ReportError, read_report_data

__all__ = ["ReportError", "ReportFiles", "default_report_dir", "write_report"]

PAGE_NAME = "roi_report.html"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    images: dict[str, Path]  # chart name -> its PNG
    titles: dict[str, str]  # chart name -> its heading
    specs: dict[str, dict]  # chart name -> its Vega-Lite spec
    svgs: dict[str, str]  # chart name -> its SVG (a third of the PNG's size: what the Dagster UI shows)


def vl_version() -> str:
    """The Vega-Lite release Altair writes specs for (e.g. '6.4'), for vl-convert to render them with."""
    import altair as alt

    return ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


def _vega_bundle(version: str) -> str:
    """The Vega-Lite runtime the page inlines, built once per release and kept in the user's cache:
    building it is most of a small report's time, and it never changes for a release."""
    import vl_convert as vlc

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crm-roi"
    path = cache / f"vega-bundle-{vlc.__version__}-vl{version}.js"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    bundle = vlc.javascript_bundle(vl_version=version)
    cache.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(bundle, encoding="utf-8")
    temporary.replace(path)  # atomic: two runs at once never read half a bundle
    return bundle


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
    images, svgs = {}, {}
    for chart in charts:  # the PNG is rasterised from the SVG: one layout of each chart instead of two
        svgs[chart.name] = vlc.vegalite_to_svg(chart.spec, vl_version=version)
        path = out / f"{chart.name}.png"
        path.write_bytes(vlc.svg_to_png(svgs[chart.name], scale=png_scale))
        images[chart.name] = path
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pipelines.report", "."), autoescape=True, keep_trailing_newline=True,
    )
    bundle = _vega_bundle(version).replace("</script", "<\\/script")
    html = environment.get_template("page.html.j2").render(
        story=tell(data),
        charts=charts,
        source=published.name,
        vega_bundle=jinja2.utils.markupsafe.Markup(bundle),
        specs=jinja2.utils.markupsafe.Markup(_script_json({c.name: c.spec for c in charts})),
    )
    page = out / PAGE_NAME
    page.write_text(html, encoding="utf-8")
    return ReportFiles(page, images, {c.name: c.title for c in charts}, {c.name: c.spec for c in charts}, svgs)
