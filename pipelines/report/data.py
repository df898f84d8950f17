"""What the report shows, read from the analysts' copy: small aggregates only, never raw rows.

Tables and columns that a newer release adds (expected revenue, the bootstrap interval,
the sensitivity and TEI tables, the data-quality table) are used when the file has them;
without them the report falls back to what every file holds (the flat baseline as the
expected revenue; quarantined rows and staging row counts for data quality).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb

from pipelines.models import KPIS
from pipelines.query import NoTables

# The KPIs drawn before vs after go-live, in this order (those without data are left out).
KPI_PANELS = {
    "revenue_won": "revenue won", "deals_won": "deals won", "win_rate": "win rate",
    "avg_deal_size": "average deal size", "sales_cycle_days_median": "sales cycle (median days)",
    "deals_created": "deals created", "customers_new": "new customers", "churn_rate": "churn rate",
    "cac": "customer acquisition cost", "csat_avg": "satisfaction (mean score)",
    "adoption_rate": "CRM adoption (active / seats)", "operating_cost": "operating cost",
}
CYCLE_BIN_DAYS = 10
CYCLE_CAP_DAYS = 180  # longer cycles share the last bin
BOOTSTRAP_COLUMNS = ("roi_p05", "roi_p50", "roi_p95",
                     "incremental_revenue_p05", "incremental_revenue_p50", "incremental_revenue_p95")

Record = dict[str, object]


class ReportError(ValueError):
    """The file cannot be reported on (no tables yet); the message says what to run."""


@dataclass
class ReportData:
    """Everything one report draws and states."""

    summary: Record
    assumptions: dict[str, str | None]
    baseline: Record
    rolling: list[Record]
    revenue: list[Record]  # per complete period: actual, expected (post go-live), phase
    kpis: list[Record]  # long: kpi, label, period_start, phase, value, baseline, band_low, band_high
    cycle: list[Record]  # phase, days_bin, deals, share
    stages: list[Record]  # phase, stage, days_mean, exits
    benefits_costs: list[Record]  # period_start, part, kind (benefit | cost), amount
    data_quality: list[Record]  # table_name, status ('loaded' or the reason), rows
    quarantined: int
    loaded: int
    sensitivity: list[Record] = field(default_factory=list)
    tei: list[Record] = field(default_factory=list)

    @property
    def payback_period(self) -> Record | None:
        """The first period from go-live whose cumulative benefit reached the cost."""
        go_live = self.summary["go_live"]
        return next((r for r in self.rolling if r["payback_reached"] and r["period_start"] >= go_live), None)


def _plain(value: object) -> object:
    """JSON-ready: dates as ISO text (what Vega-Lite parses), decimals as floats."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _records(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> list[Record]:
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    schema, name = table.split(".")
    return [c for (c,) in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position", [schema, name]).fetchall()]


def read_report_data(published: Path) -> ReportData:
    """Read the aggregates of the report from the analysts' copy at `published`."""
    if not published.is_file():
        raise NoTables(f"no DuckDB file at {published}: run `crm-roi run` (or `demo`) first")
    with duckdb.connect(str(published), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        if not _columns(con, "roi.summary"):
            raise ReportError(f"{published} has no roi.summary: run `crm-roi run` on it first")
        return _read(con)


def _read(con: duckdb.DuckDBPyConnection) -> ReportData:
    summary = _records(con, "SELECT * FROM roi.summary")[0]
    assumptions = dict(con.execute("SELECT assumption, value FROM roi.assumptions").fetchall())
    baseline = _records(con, "SELECT * FROM kpi.baseline")[0]
    rolling = _records(con, "SELECT * FROM roi.rolling ORDER BY period_start")
    data = ReportData(
        summary=summary,
        assumptions=assumptions,
        baseline=baseline,
        rolling=rolling,
        revenue=_revenue(con),
        kpis=_kpis(con),
        cycle=_cycle(con),
        stages=_stages(con),
        benefits_costs=_benefits_costs(con, rolling, assumptions),
        data_quality=_data_quality(con),
        quarantined=0,
        loaded=0,
        sensitivity=_records(con, "SELECT * FROM roi.sensitivity"),
        tei=_records(con, "SELECT * FROM roi.tei ORDER BY year"),
    )
    data.quarantined = sum(r["rows"] for r in data.data_quality if r["status"] != "loaded")
    data.loaded = sum(r["rows"] for r in data.data_quality if r["status"] == "loaded")
    return data


def _revenue(con: duckdb.DuckDBPyConnection) -> list[Record]:
    """Actual revenue per complete period and, from go-live, what was expected without the CRM."""
    return _records(con, """
        SELECT p.period_start, p.phase, p.revenue_won AS actual,
               CASE WHEN p.phase = 'post_go_live' THEN r.expected_revenue END AS expected
        FROM kpi.periodic AS p LEFT JOIN roi.rolling AS r USING (period_start)
        WHERE p.is_complete ORDER BY p.period_start""")


def _kpis(con: duckdb.DuckDBPyConnection) -> list[Record]:
    """Each KPI per complete period beside its baseline and the range its baseline periods spanned."""
    known = {k.name for k in KPIS}
    names = [k for k in KPI_PANELS if k in known]
    rows = _records(con, """
        WITH v AS (
            SELECT v.kpi, v.period_start, p.phase, v.value, v.baseline,
                   p.period_start >= b.window_start AND p.period_end <= b.window_end AS in_window
            FROM kpi.vs_baseline AS v
            JOIN kpi.periodic AS p USING (period_start)
            CROSS JOIN kpi.baseline AS b
            WHERE p.is_complete AND v.kpi IN (SELECT unnest($names))
        )
        SELECT kpi, period_start, phase, value, baseline,
               min(value) FILTER (WHERE in_window) OVER (PARTITION BY kpi) AS band_low,
               max(value) FILTER (WHERE in_window) OVER (PARTITION BY kpi) AS band_high
        FROM v ORDER BY kpi, period_start""", {"names": names})
    with_data = {r["kpi"] for r in rows if r["value"] is not None}
    return [{**r, "label": KPI_PANELS[r["kpi"]]} for r in rows if r["kpi"] in with_data]


def _cycle(con: duckdb.DuckDBPyConnection) -> list[Record]:
    """Share of won deals by sales-cycle length, in the baseline window and after go-live."""
    return _records(con, """
        WITH b AS (SELECT window_start, window_end FROM kpi.baseline),
        s AS (SELECT as_of, go_live FROM roi.summary),
        won AS (
            SELECT CASE WHEN d.closed_at < s.go_live THEN 'before go-live' ELSE 'after go-live' END AS phase,
                   least(date_diff('day', CAST(d.created_at AS DATE), CAST(d.closed_at AS DATE)), $cap) AS days
            FROM staging.deals AS d, b, s
            WHERE d.is_won AND NOT d.is_deleted
              AND (d.closed_at >= b.window_start AND d.closed_at < b.window_end
                   OR d.closed_at >= s.go_live AND d.closed_at < s.as_of + INTERVAL 1 DAY)
        )
        SELECT phase, CAST(floor(days / $width) * $width AS INTEGER) AS days_bin, count(*) AS deals,
               count(*) / sum(count(*)) OVER (PARTITION BY phase) AS share
        FROM won GROUP BY 1, 2 ORDER BY phase DESC, days_bin""", {"cap": CYCLE_CAP_DAYS, "width": CYCLE_BIN_DAYS})


def _stages(con: duckdb.DuckDBPyConnection) -> list[Record]:
    """Mean days in each stage over the baseline window and after go-live (weighted by exits)."""
    return _records(con, """
        SELECT CASE WHEN p.phase = 'baseline' THEN 'before go-live' ELSE 'after go-live' END AS phase,
               d.stage,
               sum(d.days_in_stage_mean * d.stage_exits) / sum(d.stage_exits) AS days_mean,
               sum(d.stage_exits) AS exits
        FROM kpi.stage_durations AS d
        JOIN kpi.periodic AS p USING (period_start)
        CROSS JOIN kpi.baseline AS b
        WHERE p.is_complete AND (p.phase = 'post_go_live' OR p.period_start >= b.window_start
                                 AND p.period_end <= b.window_end)
        GROUP BY ALL HAVING sum(d.stage_exits) > 0 ORDER BY d.stage, phase DESC""")


BENEFIT_PARTS = {"revenue": "benefit_revenue", "retention": "benefit_retention",
                 "cost savings": "benefit_cost_savings"}


def _kept_after_risk(rolling: list[Record], assumptions: dict[str, str | None]) -> float:
    """1 - risk_adjustment: from the run's assumptions, else read back from the period whose
    benefits before the haircut are largest (benefit_total = their sum x (1 - risk))."""
    if assumptions.get("risk_adjustment") is not None:
        return 1.0 - float(assumptions["risk_adjustment"])
    gross = [(sum(r[c] for c in BENEFIT_PARTS.values()), r["benefit_total"]) for r in rolling]
    before, after = max(gross, key=lambda g: abs(g[0]), default=(0.0, 0.0))
    return after / before if before else 1.0


def _benefits_costs(con: duckdb.DuckDBPyConnection, rolling: list[Record],
                    assumptions: dict[str, str | None]) -> list[Record]:
    """Per ROI period: the three benefits after the risk haircut (so they add up to benefit_total),
    and the CRM costs by GL category (negative, so costs hang below the axis)."""
    keep = _kept_after_risk(rolling, assumptions)
    rows = [{"period_start": r["period_start"], "part": part, "kind": "benefit", "amount": r[column] * keep}
            for r in rolling for part, column in BENEFIT_PARTS.items()]
    rows += _records(con, """
        SELECT p.period_start, replace(g.category, 'crm_', 'CRM ') AS part, 'cost' AS kind,
               -sum(g.amount_base) AS amount
        FROM staging.finance_gl AS g
        JOIN kpi.periodic AS p ON g.posted_on >= p.period_start AND g.posted_on < p.period_end
        WHERE g.category LIKE 'crm\\_%' ESCAPE '\\'
          AND p.period_start IN (SELECT period_start FROM roi.rolling)
          AND g.posted_on <= (SELECT as_of FROM roi.summary)
        GROUP BY ALL ORDER BY 1, 2""")
    return rows


def _data_quality(con: duckdb.DuckDBPyConnection) -> list[Record]:
    """Rows loaded and quarantined (by reason) per staging table."""
    return _records(con, """
        SELECT table_name, coalesce(reason, 'loaded') AS status, sum(rows) AS rows
        FROM kpi.data_quality GROUP BY ALL ORDER BY table_name, status""")
