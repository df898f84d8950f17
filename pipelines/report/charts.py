"""The report's charts as Vega-Lite specs (Altair): the page renders them, vl-convert draws their PNGs.

Data goes into each spec inline (a few hundred aggregate rows at most), so a chart needs
nothing but the page it is in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import altair as alt

from pipelines.report.data import CYCLE_BIN_DAYS, CYCLE_CAP_DAYS, KPI_PANELS, Record, ReportData

WIDTH, HEIGHT = 620, 240
BENEFIT, COST, NEUTRAL, EXPECTED = "#2a9d8f", "#e76f51", "#8d99ae", "#264653"
PHASES = alt.Scale(domain=["before go-live", "after go-live"], range=[NEUTRAL, BENEFIT])
MONTH = alt.Axis(format="%b %Y", labelAngle=0, labelOverlap=True, title=None)


@dataclass(frozen=True)
class Chart:
    """One chart of the report: its file name, heading, how to read it, and its spec."""

    name: str
    title: str
    caption: str
    spec: dict


def _period(field: str = "period_start") -> alt.X:
    return alt.X(f"{field}:T", scale=alt.Scale(type="utc"), axis=MONTH)


def _when(field: str = "period_start") -> alt.Tooltip:
    return alt.Tooltip(f"utcyearmonthdate({field}):T", title="period")


def _money(field: str, title: str) -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", title=title, format=",.0f")


def _data(rows: list[Record]) -> alt.Data:
    return alt.Data(values=rows)


def payback(data: ReportData, currency: str) -> alt.TopLevelMixin:
    rows = [{"period_start": r["period_start"], "series": series, "amount": r[column]}
            for r in data.rolling
            for series, column in (("cumulative benefit", "cumulative_benefit"),
                                   ("cumulative cost", "cumulative_cost"))]
    lines = alt.Chart(_data(rows)).mark_line(point=True, strokeWidth=2.5).encode(
        x=_period(),
        y=alt.Y("amount:Q", title=currency, axis=alt.Axis(format="~s")),
        color=alt.Color("series:N", scale=alt.Scale(domain=["cumulative benefit", "cumulative cost"],
                                                    range=[BENEFIT, COST]), legend=alt.Legend(title=None,
                                                                                              orient="top-left")),
        tooltip=[_when(), "series:N", _money("amount", currency)],
    )
    layers = [lines, _go_live_rule(data)]
    if (point := data.payback_period) is not None:
        marker = {"period_start": point["period_start"], "amount": point["cumulative_benefit"],
                  "label": f"payback: {_month(point['period_start'])}"}
        layers.append(alt.Chart(_data([marker])).mark_point(
            shape="diamond", size=260, filled=True, color=EXPECTED).encode(x=_period(), y="amount:Q"))
        layers.append(alt.Chart(_data([marker])).mark_text(
            align="left", dx=10, dy=-14, fontWeight="bold", color=EXPECTED).encode(
            x=_period(), y="amount:Q", text="label:N"))
    return alt.layer(*layers).properties(width=WIDTH, height=HEIGHT)


def _go_live_rule(data: ReportData) -> alt.Chart:
    go_live = [{"period_start": data.summary["go_live"], "label": "go-live"}]
    rule = alt.Chart(_data(go_live)).mark_rule(strokeDash=[4, 4], color="#555").encode(x=_period())
    text = alt.Chart(_data(go_live)).mark_text(align="left", dx=4, baseline="top", y=2, color="#555").encode(
        x=_period(), text="label:N")
    return alt.layer(rule, text)


def _month(iso: object) -> str:
    return dt.date.fromisoformat(str(iso)).strftime("%b %Y")


def roi_over_time(data: ReportData) -> alt.TopLevelMixin:
    rows = [{"period_start": r["period_start"], "series": series, "roi_pct": 100 * r[column]}
            for r in data.rolling
            for series, column in (("ROI since the start", "roi"), ("trailing 12 months", "roi_trailing_12m"))
            if r[column] is not None]
    lines = alt.Chart(_data(rows)).mark_line(point=True, strokeWidth=2.5).encode(
        x=_period(),
        y=alt.Y("roi_pct:Q", title="ROI %"),
        color=alt.Color("series:N", scale=alt.Scale(domain=["ROI since the start", "trailing 12 months"],
                                                    range=[EXPECTED, BENEFIT]),
                        legend=alt.Legend(title=None, orient="top-left")),
        tooltip=[_when(), "series:N", alt.Tooltip("roi_pct:Q", title="ROI %", format=",.1f")],
    )
    zero = alt.Chart(_data([{"y": 0}])).mark_rule(color="#999").encode(y="y:Q")
    layers = [zero, lines, _go_live_rule(data)]
    summary = data.summary
    if summary.get("roi_p05") is not None and summary.get("roi_p95") is not None and data.rolling:
        last = data.rolling[-1]["period_start"]
        interval = [{"period_start": last, "low": 100 * summary["roi_p05"], "high": 100 * summary["roi_p95"],
                     "label": "90 % bootstrap interval"}]
        layers.insert(1, alt.Chart(_data(interval)).mark_errorbar(ticks=True, thickness=10, color=EXPECTED,
                                                                  opacity=0.35).encode(
            x=_period(), y=alt.Y("low:Q", title="ROI %"), y2="high:Q",
            tooltip=[alt.Tooltip("low:Q", title="ROI % (5th percentile)", format=",.1f"),
                     alt.Tooltip("high:Q", title="ROI % (95th percentile)", format=",.1f")]))
        layers.append(alt.Chart(_data(interval)).mark_text(align="right", dx=-10, color=EXPECTED).encode(
            x=_period(), y="high:Q", text="label:N"))
    return alt.layer(*layers).properties(width=WIDTH, height=HEIGHT)


def revenue_vs_expected(data: ReportData, currency: str) -> alt.TopLevelMixin:
    bars = alt.Chart(_data(data.revenue)).mark_bar(opacity=0.85).encode(
        x=_period(),
        y=alt.Y("actual:Q", title=currency, axis=alt.Axis(format="~s")),
        color=alt.Color("phase:N", scale=alt.Scale(domain=["baseline", "post_go_live"], range=[NEUTRAL, BENEFIT]),
                        legend=alt.Legend(title="actual revenue won", orient="top-left",
                                          labelExpr="datum.label == 'baseline' ? 'before go-live' : "
                                                    "'after go-live'")),
        tooltip=[_when(), _money("actual", "actual"), _money("expected", "expected without the CRM")],
    )
    expected = alt.Chart(_data([r for r in data.revenue if r["expected"] is not None])).mark_line(
        color=EXPECTED, strokeDash=[6, 3], strokeWidth=2.5, point=alt.OverlayMarkDef(color=EXPECTED, size=20),
    ).encode(x=_period(), y="expected:Q", tooltip=[_when(), _money("expected", "expected without the CRM")])
    label = alt.Chart(_data([r for r in data.revenue if r["expected"] is not None][-1:])).mark_text(
        align="right", dy=-10, color=EXPECTED).encode(x=_period(), y="expected:Q",
                                                      text=alt.value("expected without the CRM"))
    return alt.layer(bars, expected, label).properties(width=WIDTH, height=HEIGHT)


def kpis_before_after(data: ReportData) -> alt.TopLevelMixin:
    base = alt.Chart().encode(x=_period())
    band = base.mark_area(color=NEUTRAL, opacity=0.25).encode(
        y=alt.Y("band_low:Q", title=None), y2="band_high:Q").transform_filter("isValid(datum.band_low)")
    baseline = base.mark_line(color="#555", strokeDash=[4, 3]).encode(y="baseline:Q").transform_filter(
        "isValid(datum.baseline)")
    line = base.mark_line(point=alt.OverlayMarkDef(size=14), strokeWidth=2).encode(
        y=alt.Y("value:Q", scale=alt.Scale(zero=False)),
        color=alt.Color("phase:N", scale=alt.Scale(domain=["baseline", "post_go_live"], range=[NEUTRAL, BENEFIT]),
                        legend=None),
        tooltip=[_when(), alt.Tooltip("label:N", title="KPI"), alt.Tooltip("value:Q", format=",.3~f"),
                 alt.Tooltip("baseline:Q", format=",.3~f")],
    )
    drawn = {r["label"] for r in data.kpis}
    order = [label for label in KPI_PANELS.values() if label in drawn]
    return alt.layer(band, baseline, line, data=_data(data.kpis)).properties(width=190, height=110).facet(
        facet=alt.Facet("label:N", title=None, sort=order), columns=3,
    ).resolve_scale(y="independent")


def sales_cycle(data: ReportData) -> alt.TopLevelMixin:
    last = f"{CYCLE_CAP_DAYS}+"
    cycle = alt.Chart(_data(data.cycle)).mark_bar().encode(
        x=alt.X("days_bin:O", title=f"days from created to won ({CYCLE_BIN_DAYS}-day bins; last: {last})"),
        xOffset=alt.XOffset("phase:N", sort=["before go-live", "after go-live"]),
        y=alt.Y("share:Q", title="share of won deals", axis=alt.Axis(format="%")),
        color=alt.Color("phase:N", scale=PHASES, legend=alt.Legend(title=None, orient="top-right")),
        tooltip=["phase:N", alt.Tooltip("days_bin:O", title="days from"), "deals:Q",
                 alt.Tooltip("share:Q", format=".1%")],
    ).properties(width=380, height=HEIGHT, title="Sales cycle of won deals")
    stages = alt.Chart(_data(data.stages)).mark_bar().encode(
        y=alt.Y("stage:N", title=None),
        yOffset=alt.YOffset("phase:N", sort=["before go-live", "after go-live"]),
        x=alt.X("days_mean:Q", title="mean days in stage"),
        color=alt.Color("phase:N", scale=PHASES, legend=alt.Legend(title=None, orient="top-right")),
        tooltip=["stage:N", "phase:N", alt.Tooltip("days_mean:Q", format=",.1f", title="mean days"),
                 alt.Tooltip("exits:Q", title="deals that left the stage", format=",")],
    ).properties(width=240, height=HEIGHT, title="Time in stage")
    return alt.hconcat(cycle, stages)


def benefits_and_costs(data: ReportData, currency: str) -> alt.TopLevelMixin:
    parts = ["revenue", "retention", "cost savings"]
    costs = sorted({r["part"] for r in data.benefits_costs if r["kind"] == "cost"})
    colors = ["#2a9d8f", "#8ab17d", "#83c5be", "#e76f51", "#f4a261", "#e9c46a", "#d62828", "#9d0208"]
    bars = alt.Chart(_data(data.benefits_costs)).mark_bar().encode(
        x=alt.X("period_start:T", scale=alt.Scale(type="utc"), axis=MONTH, timeUnit="utcyearmonth"),
        y=alt.Y("sum(amount):Q", title=f"{currency} (costs below zero)", axis=alt.Axis(format="~s")),
        color=alt.Color("part:N", scale=alt.Scale(domain=[*parts, *costs], range=colors[:3] + colors[3:][:len(costs)]),
                        legend=alt.Legend(title=None, orient="right")),
        order=alt.Order("kind:O"),
        tooltip=[_when(), "kind:N", "part:N", _money("amount", currency)],
    )
    zero = alt.Chart(_data([{"y": 0}])).mark_rule(color="#333").encode(y="y:Q")
    return alt.layer(bars, zero).properties(width=WIDTH - 100, height=HEIGHT)


def sensitivity(data: ReportData) -> alt.TopLevelMixin:
    """A tornado: one row per assumption, its lower setting's bar and its higher one's from zero;
    a counterfactual method (no value) gets a row of its own."""
    rows = [{**r, "row": r["assumption"] if r.get("value") is not None else f"{r['assumption']}: {r['setting']}",
             "delta_pct_points": 100 * r["delta_roi"] if r["delta_roi"] is not None else None,
             "label": f"{r['setting']}" + (f" ({r['value']:g})" if isinstance(r.get("value"), float) else "")}
            for r in data.sensitivity]
    order = sorted({r["row"] for r in rows},
                   key=lambda a: -max(abs(r["delta_pct_points"] or 0) for r in rows if r["row"] == a))
    bars = alt.Chart(_data(rows)).mark_bar(height=alt.RelativeBandSize(0.6)).encode(
        y=alt.Y("row:N", sort=order, title=None),
        x=alt.X("delta_pct_points:Q", title="change in ROI (percentage points) against the configured run",
                scale=alt.Scale(padding=60)),
        color=alt.condition("datum.delta_pct_points >= 0", alt.value(BENEFIT), alt.value(COST)),
        tooltip=["assumption:N", "setting:N", "value:Q", alt.Tooltip("roi_pct:Q", format=",.1f", title="ROI %"),
                 alt.Tooltip("delta_pct_points:Q", format="+,.1f", title="change (points)")],
    )
    right = bars.mark_text(align="left", dx=4, fontSize=11, color="#333").encode(
        text="label:N").transform_filter("datum.delta_pct_points >= 0")
    left = bars.mark_text(align="right", dx=-4, fontSize=11, color="#333").encode(
        text="label:N").transform_filter("datum.delta_pct_points < 0")
    zero = alt.Chart(_data([{"x": 0}])).mark_rule(color="#333").encode(x="x:Q")
    return alt.layer(bars, left, right, zero).properties(width=WIDTH - 160, height=alt.Step(34))


def tei_years(data: ReportData, currency: str) -> alt.TopLevelMixin:
    rows = []
    for r in data.tei:
        year = f"year {r['year']}" + (" (projected)" if r["is_projected"] else "")
        rows += [{"year": year, "series": "PV benefits", "amount": r["pv_benefits"], "projected": r["is_projected"]},
                 {"year": year, "series": "PV costs", "amount": -r["pv_costs"], "projected": r["is_projected"]}]
    npv = [{"year": f"year {r['year']}" + (" (projected)" if r["is_projected"] else ""),
            "cumulative_npv": r["cumulative_npv"]} for r in data.tei]
    bars = alt.Chart(_data(rows)).mark_bar(width=alt.RelativeBandSize(0.6)).encode(
        x=alt.X("year:N", title=None, sort=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("amount:Q", title=f"{currency}, present value", axis=alt.Axis(format="~s")),
        color=alt.Color("series:N", scale=alt.Scale(domain=["PV benefits", "PV costs", "cumulative NPV"],
                                                    range=[BENEFIT, COST, EXPECTED]),
                        legend=alt.Legend(title=None, orient="top-left")),
        opacity=alt.condition("datum.projected", alt.value(0.45), alt.value(0.9)),
        tooltip=["year:N", "series:N", _money("amount", currency)],
    )
    line = alt.Chart(_data(npv)).mark_line(point=True, color=EXPECTED, strokeWidth=2.5).encode(
        x=alt.X("year:N", sort=None), y="cumulative_npv:Q",
        tooltip=["year:N", _money("cumulative_npv", "cumulative NPV")])
    return alt.layer(bars, line).properties(width=WIDTH - 160, height=HEIGHT)


def data_quality(data: ReportData) -> alt.TopLevelMixin:
    loaded = [r for r in data.data_quality if r["status"] == "loaded"]
    rejected = [r for r in data.data_quality if r["status"] != "loaded"]
    tables = sorted({r["table_name"] for r in data.data_quality})
    left = alt.Chart(_data(loaded)).mark_bar(color=BENEFIT).encode(
        y=alt.Y("table_name:N", title=None, sort=tables),
        x=alt.X("rows:Q", title="rows loaded", axis=alt.Axis(format="~s")),
        tooltip=["table_name:N", alt.Tooltip("rows:Q", format=",")],
    ).properties(width=240, height=alt.Step(22), title="Loaded")
    right = alt.Chart(_data(rejected)).mark_bar().encode(
        y=alt.Y("table_name:N", title=None, sort=tables),
        x=alt.X("sum(rows):Q", title="rows quarantined", axis=alt.Axis(tickMinStep=1)),
        color=alt.Color("status:N", title="reason", legend=alt.Legend(orient="right", labelLimit=320),
                        scale=alt.Scale(scheme="oranges")),
        tooltip=["table_name:N", alt.Tooltip("status:N", title="reason"), "rows:Q"],
    ).properties(width=160, height=alt.Step(22), title="Quarantined, by reason")
    return alt.hconcat(left, right).resolve_scale(y="shared")


def build_charts(data: ReportData, currency: str) -> list[Chart]:
    """Every chart the data supports, in the order the page tells the story."""
    charts = [
        Chart("payback", "Cumulative benefit against cumulative cost",
              "The CRM has paid for itself from the point where the green line crosses the orange one.",
              payback(data, currency)),
        Chart("roi", "ROI over time",
              "Net ROI since the first CRM cost, and over the trailing twelve months alone.", roi_over_time(data)),
        Chart("revenue", "Revenue won against what was expected without the CRM",
              "Bars: revenue won per period. Dashed line: the revenue expected without the CRM "
              "(the counterfactual); the gap after go-live is the incremental revenue.",
              revenue_vs_expected(data, currency)),
        Chart("benefits_costs", "Where the benefit comes from, and what the CRM cost",
              "Benefits per period by source (after the risk haircut) above zero, CRM costs by ledger category "
              "below.", benefits_and_costs(data, currency)),
        Chart("kpis", "Each KPI before and after go-live",
              "Grey: the baseline months, green: after go-live. Dashed line: the baseline value; "
              "shaded band: the range the KPI moved in during the baseline.", kpis_before_after(data)),
        Chart("sales_cycle", "Sales cycle and time in stage, before and after go-live",
              "How long won deals took from creation to close, and how long deals sat in each stage.",
              sales_cycle(data)),
    ]
    if data.sensitivity:
        charts.append(Chart("sensitivity", "What moves the ROI",
                            "The change in ROI when one assumption is set otherwise, the others as configured.",
                            sensitivity(data)))
    if data.tei:
        charts.append(Chart("tei", "Total Economic Impact by year",
                            "Present value of benefits and costs per year from go-live (year 0: before it); "
                            "pale bars are projected from the trailing twelve months.", tei_years(data, currency)))
    charts.append(Chart("data_quality", "Data quality: rows loaded and rows quarantined",
                        "Rows that failed a row rule are left out of every figure; their reasons are listed.",
                        data_quality(data)))
    return [Chart(c.name, c.title, c.caption, _spec(c.spec)) for c in charts]  # type: ignore[arg-type]


def _spec(chart: alt.TopLevelMixin) -> dict:
    """The chart's Vega-Lite spec. Not validated against the schema at run time (most of the time
    building the charts took); tests/test_report.py validates every chart."""
    return chart.configure(font="sans-serif").configure_view(stroke=None).to_dict(validate=False)
