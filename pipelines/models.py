"""Every table crm-roi writes, declared once: the registry.

An entry names a table's SQL model, its columns and what each means, its Pandera
checks and whether analysts get it in their copy. Everything else is derived from
it: the Dagster assets and their upstream (read from the SQL itself), the asset
checks, the column descriptions in the UI and in the warehouse, the table
reference in docs/tables.md and the analysts' copy. Adding a KPI is its SQL in
sql/kpi/periodic.sql and sql/kpi/baseline.sql and one `Kpi` entry below.

The registry is checked against the SQL when this module is imported: a model
that selects a column the registry does not declare (or misses one it does), a
KPI without a baseline rule, or a read of an unknown table is an error at load,
not a silently missing row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandera.polars as pa

from connectors.contract import CANONICAL_STREAMS
from pipelines import schemas
from pipelines.sql_files import model_shape

# Columns a staging model adds for the build itself (the key, the broken rules, the raw row).
BUILD_COLUMNS = ("_key", "_reasons", "_raw_rowid")


class RegistryError(ValueError):
    """The registry and the SQL disagree; the message names the table and the column."""


@dataclass(frozen=True)
class Check:
    """A Pandera schema run as a Dagster asset check; a blocking one stops everything downstream."""

    name: str
    schema: type[pa.DataFrameModel]
    blocking: bool = True

    @property
    def description(self) -> str:
        return (self.schema.__doc__ or "").strip() or f"honours the Pandera schema {self.schema.__name__}"


@dataclass(frozen=True)
class SqlCheck:
    """A rule on a built table, as SQL returning the rows that break it (none: it passed).

    The query may read `previous_version`, the table as it was before this build (empty on the
    first). A failed check that is not blocking is a warning in the run summary.
    """

    name: str
    description: str
    sql: str
    blocking: bool = False


@dataclass(frozen=True)
class Kpi:
    """A KPI column of kpi.periodic, and how kpi.baseline sums it up over the baseline window."""

    name: str
    meaning: str
    baseline: Literal["mean", "pooled"]  # mean per period (flows), or pooled over the window (rates)

    @property
    def baseline_meaning(self) -> str:
        rule = "mean per period" if self.baseline == "mean" else "pooled over the window"
        return f"{self.meaning} Baseline: {rule}."


@dataclass(frozen=True)
class Table:
    """One table crm-roi writes."""

    name: str  # schema.table
    description: str
    columns: dict[str, str]  # column -> meaning, in table order
    model: str | None = None  # sql/<model>.sql; None: written by code (e.g. quarantine)
    published: bool = True  # in the analysts' copy
    preview: str | None = None  # a SELECT shown in the Dagster UI
    checks: tuple[Check, ...] = ()  # Pandera schemas (staging)
    sql_checks: tuple[SqlCheck, ...] = ()  # rules on the built table (KPI and ROI)

    @property
    def schema(self) -> str:
        return self.name.split(".")[0]

    @property
    def short_name(self) -> str:
        return self.name.split(".")[1]

    @property
    def key(self) -> str | None:
        """A staging table's key, its stream's (connectors/contract.py): one row per (source, key), and
        rebuildable for some keys only (see transform.py). None where the stream has no single key."""
        stream = CANONICAL_STREAMS.get(self.short_name) if self.schema == "staging" else None
        return stream.key if stream else None

    @property
    def reads(self) -> frozenset[str]:
        """The tables its SQL reads (raw streams as 'raw.<stream>')."""
        return model_shape(self.model).reads if self.model else frozenset()

    @property
    def variables(self) -> frozenset[str]:
        """The run variables its SQL reads (getvariable)."""
        return model_shape(self.model).variables if self.model else frozenset()



# -- KPIs ------------------------------------------------------------------------------------------
KPIS = (
    Kpi("deals_created", "Deals created in the period (deleted deals count nowhere).", "mean"),
    Kpi("deals_won", "Deals closed won in the period (by closed_at).", "mean"),
    Kpi("deals_lost", "Deals closed and not won in the period.", "mean"),
    Kpi("win_rate", "deals_won / (deals_won + deals_lost); null when nothing closed.", "pooled"),
    Kpi("revenue_won", "Sum of amount_base of deals won in the period (a null amount adds 0).", "mean"),
    Kpi("avg_deal_size", "revenue_won / won deals that have an amount.", "pooled"),
    Kpi("sales_cycle_days_median", "Median (interpolated) calendar days from created to closed, won deals.",
        "pooled"),
    Kpi("sales_cycle_days_mean", "Mean calendar days from created to closed, won deals.", "pooled"),
    Kpi("customers_active_start", "Customers started before the period and not churned before it.", "mean"),
    Kpi("customers_new", "Customers started in the period.", "mean"),
    Kpi("customers_churned", "Customers active at the period's start who churned in it.", "mean"),
    Kpi("churn_rate", "customers_churned / customers_active_start; null when none were active.", "pooled"),
    Kpi("retention_rate", "1 - churn_rate.", "pooled"),
    Kpi("sales_marketing_spend", "GL lines in category sales_marketing posted in the period (base currency).",
        "mean"),
    Kpi("cac", "sales_marketing_spend / customers_new; null without new customers.", "pooled"),
    Kpi("csat_avg", "Mean satisfaction score of responses in the period.", "pooled"),
    Kpi("adoption_rate", "Active CRM users / licensed seats (summed over usage rows in the period).", "pooled"),
    Kpi("operating_cost", "GL lines in category operating_cost posted in the period (base currency).", "mean"),
    Kpi("crm_cost", "GL lines in every crm_* category posted in the period (base currency).", "mean"),
    Kpi("open_deals_start", "Deals created before the period and not closed before it (the open pipeline).", "mean"),
    Kpi("open_pipeline_value_start", "Base-currency amount of those open deals (a null amount adds 0).", "mean"),
    Kpi("pipeline_velocity", "open_deals_start x win_rate x avg_deal_size / sales_cycle_days_mean: revenue the "
        "pipeline yields per day; null when a term is null or 0.", "pooled"),
)
KPI_COLUMNS = tuple(k.name for k in KPIS)

_PERIOD = {
    "period_start": "First day of the calendar period (month, quarter or ISO week), UTC.",
    "period_end": "First day after the period (exclusive).",
    "phase": "'baseline' before go-live, 'post_go_live' from the period starting on or after it.",
    "is_complete": "True when period_end <= as_of + 1 day; the current period is flagged false.",
}
_SOURCE = {"source": "Configured source the row came from (keys are namespaced by source)."}
_BATCH = {"batch_id": "Load batch that landed the row's raw version."}
_PRICED = {
    "currency": "ISO currency code of amount.",
    "fx_rate": "Rate to the base currency on the pricing date (1 for the base currency).",
    "amount_base": "amount x fx_rate, in the base currency.",
}

STAGING = (
    Table("staging.fx_rates", "One rate per date and currency (the last occurrence wins).", {
        **_SOURCE,
        "date": "Day the rate applies from.",
        "currency": "ISO currency code.",
        "rate_to_base": "Base-currency value of one unit of currency.",
        **_BATCH,
    }, model="staging/fx_rates", checks=(Check("schema", schemas.FxRates),)),
    Table("staging.deals", "One row per deal, typed, in UTC, with the amount in the base currency.", {
        **_SOURCE,
        "deal_id": "The deal's id in its source.",
        "deal_name": "The deal's name.",
        "account_id": "The company the deal is with.",
        "owner_id": "The deal's owner (sales rep).",
        "pipeline": "The pipeline the deal is in.",
        "stage": "The deal's stage, as the CRM names it.",
        "is_closed": "The deal is closed (won or lost).",
        "is_won": "The deal is closed won.",
        "is_deleted": "Deleted, archived or merged away: the deal counts nowhere.",
        "amount": "The deal's amount in its own currency.",
        **_PRICED,
        "created_at": "When the deal was created (UTC).",
        "closed_at": "When the deal was closed (UTC); null while open.",
        "updated_at": "The version time that decided which copy of the deal won.",
        **_BATCH,
        "segment": "The deal's segment (region, team, business unit), as exported; null when the export has none.",
    }, model="staging/deals", checks=(Check("schema", schemas.Deals),
                                      Check("amount_present", schemas.DealAmounts, blocking=False))),
    Table("staging.deal_stage_history", "When each deal entered each stage.", {
        **_SOURCE,
        "deal_id": "The deal.",
        "stage": "The stage entered.",
        "entered_at": "When the deal entered the stage (UTC).",
        "exited_at": "The deal's next stage entry; null while in the stage.",
        **_BATCH,
    }, model="staging/deal_stage_history", checks=(Check("schema", schemas.DealStageHistory),)),
    Table("staging.customers", "One row per customer: a record its source flags a customer, or gives a "
          "started_at, or names as the account of a won deal (prospects, partners and competitors are left out).", {
        **_SOURCE,
        "customer_id": "The customer's id in its source.",
        "name": "The customer's name.",
        "started_at": "When the company became a customer (UTC): the record's own value, else the close of its "
                      "first won deal in the same source, else (a customer its CRM flags) its creation.",
        "churned_at": "When it stopped being one (UTC); null while a customer.",
        "mrr": "Monthly recurring revenue, as exported.",
        "is_deleted": "Deleted or merged away: the customer counts nowhere.",
        **_BATCH,
    }, model="staging/customers", checks=(Check("schema", schemas.Customers),)),
    Table("staging.finance_gl", "One row per general-ledger line, in the base currency, with its cost category.", {
        **_SOURCE,
        "entry_id": "The ledger line's id.",
        "posted_on": "Posting date.",
        "account": "GL account.",
        "category": "Cost category from finance.accounts; null: the line counts nowhere.",
        "description": "Line description, as exported.",
        "vendor": "Vendor, as exported.",
        "amount": "Amount in its own currency (credit notes and reversals are negative).",
        **_PRICED,
        **_BATCH,
    }, model="staging/finance_gl", checks=(Check("schema", schemas.FinanceGl),)),
    Table("staging.csat", "One row per satisfaction survey response.", {
        **_SOURCE,
        "response_id": "The response's id.",
        "customer_id": "The customer who answered.",
        "responded_at": "When they answered (UTC).",
        "score": "The score given.",
        **_BATCH,
    }, model="staging/csat", checks=(Check("schema", schemas.Csat),)),
    Table("staging.crm_usage", "CRM seats and active users, one row per usage period.", {
        **_SOURCE,
        "period_start": "First day of the usage period.",
        "active_users": "Users active in the CRM in the period.",
        "licensed_seats": "Seats paid for in the period.",
        **_BATCH,
    }, model="staging/crm_usage", checks=(Check("schema", schemas.CrmUsage),)),
)

QUARANTINE = Table("quarantine.rejected_rows", "Rows that failed a row rule, with every reason and the row as landed.",
                   {
    "table_name": "Staging table the row was meant for.",
    "source": "Configured source it came from.",
    "key": "The row's key as landed (deal_id, customer_id, ...).",
    "reason": "Every row rule it failed, separated by '; '.",
    "payload": "The row as landed, as JSON, with file name and row number: a row holding a value that did not "
               "parse shows each value's text as it came; any other row its values as parsed at landing.",
    "file_name": "Export file the row came from.",
    "row_number": "Data row number within that file (1 = first row after the header).",
    "batch_id": "Load batch that landed the row.",
    "rejected_at": "When the staging build rejected it (UTC).",
})

STAGE_MAP = Table(
    "staging.stage_map",
    "Every stage value per source and pipeline, with how its deals are classified and how many there are: "
    "a stage missing from won_stages shows as an open stage named like a closed one.",
    {
        **_SOURCE,
        "pipeline": "The pipeline.",
        "stage": "The stage, as the CRM names it.",
        "classification": "'won', 'lost' or 'open' as its deals are classified; 'mixed' when they disagree.",
        "deals": "Deals now in the stage (deleted deals count nowhere).",
        "looks_closed": "The stage's name reads like a closed stage (won, lost, closed, gagné, ganado, ...).",
    },
    model="staging/stage_map",
    preview="SELECT source, pipeline, stage, classification, deals FROM staging.stage_map ORDER BY deals DESC",
    sql_checks=(SqlCheck(
        "stages_accounted_for",
        "Every stage is classified as its name says, and none is new since the last run: a stage renamed in the "
        "CRM, or a typo in won_stages, would otherwise silently turn won deals into open ones.",
        "SELECT source, pipeline, stage, classification, deals, "
        "CASE WHEN looks_closed AND classification = 'open' THEN 'named like a closed stage but counted open' "
        "ELSE 'new since the last run' END AS why FROM staging.stage_map AS m "
        "WHERE (looks_closed AND classification = 'open') OR (EXISTS (SELECT 1 FROM previous_version) "
        "AND NOT EXISTS (SELECT 1 FROM previous_version AS p WHERE p.source = m.source "
        "AND p.pipeline IS NOT DISTINCT FROM m.pipeline AND p.stage IS NOT DISTINCT FROM m.stage)) "
        "ORDER BY deals DESC",
    ),),
)

_RATES_IN_RANGE = SqlCheck(
    "rates_within_0_and_1",
    "win_rate, churn_rate and retention_rate lie in [0, 1] in every period.",
    "SELECT period_start, win_rate, churn_rate, retention_rate FROM kpi.periodic "
    "WHERE NOT (coalesce(win_rate, 0) BETWEEN 0 AND 1 AND coalesce(churn_rate, 0) BETWEEN 0 AND 1 "
    "AND coalesce(retention_rate, 0) BETWEEN 0 AND 1)",
    blocking=True,
)
_RUNNING_SUMS = SqlCheck(
    "cumulative_columns_are_running_sums",
    "cumulative_benefit and cumulative_cost equal the running sums of benefit_total and cost_total.",
    "SELECT period_start, cumulative_benefit, cumulative_cost FROM ("
    "SELECT *, sum(benefit_total) OVER (ORDER BY period_start) AS running_benefit, "
    "sum(cost_total) OVER (ORDER BY period_start) AS running_cost FROM roi.rolling) "
    "WHERE abs(cumulative_benefit - running_benefit) > 1e-6 * greatest(1, abs(running_benefit)) "
    "OR abs(cumulative_cost - running_cost) > 1e-6 * greatest(1, abs(running_cost))",
    blocking=True,
)
_EXPECTED_REVENUE_KNOWN = SqlCheck(
    "expected_revenue_after_go_live",
    "Every period after go-live has an expected revenue; one without (no whole baseline period, or a method "
    "that cannot tell) counts its incremental revenue as 0.",
    "SELECT period_start FROM roi.rolling WHERE period_start >= getvariable('go_live') AND expected_revenue IS NULL",
)
_SUMMARY_IS_LAST_PERIOD = SqlCheck(
    "summary_is_the_last_complete_period",
    "roi.summary's cumulative benefit and cost, ROI and NPV are those of the last complete roi.rolling row.",
    "SELECT s.* FROM roi.summary AS s LEFT JOIN (SELECT * FROM roi.rolling ORDER BY period_start DESC LIMIT 1) "
    "AS r ON true WHERE s.cumulative_benefit IS DISTINCT FROM r.cumulative_benefit "
    "OR s.cumulative_cost IS DISTINCT FROM r.cumulative_cost OR s.roi IS DISTINCT FROM r.roi "
    "OR s.npv IS DISTINCT FROM r.npv_cumulative",
    blocking=True,
)

MARTS = (
    STAGE_MAP,
    Table(
        "kpi.periodic",
        "One row per period from the baseline start to the period holding as_of: deals, win rate, revenue, "
        "deal size, sales cycle, churn and retention, CAC, satisfaction, adoption, operating and CRM cost.",
        {**_PERIOD, **{k.name: k.meaning for k in KPIS}},
        model="kpi/periodic",
        sql_checks=(_RATES_IN_RANGE,),
        preview="SELECT period_start, phase, is_complete, deals_won, win_rate, revenue_won, churn_rate, crm_cost "
                "FROM kpi.periodic ORDER BY period_start DESC",
    ),
    Table(
        "kpi.baseline",
        "One row: the KPIs over the complete periods of the baseline window before go-live "
        "(flows as means per period, rates pooled).",
        {
            "window_start": "Start of the first period lying wholly inside the baseline window.",
            "window_end": "End (exclusive) of the last such period; at most go_live.",
            "periods": "Number of periods in the window.",
            **{k.name: k.baseline_meaning for k in KPIS},
        },
        model="kpi/baseline",
        preview="SELECT window_start, window_end, periods, deals_won, win_rate, revenue_won, churn_rate "
                "FROM kpi.baseline",
    ),
    Table(
        "kpi.vs_baseline",
        "Every KPI of every period beside its baseline: value, baseline, delta, delta_pct.",
        {
            "period_start": "The period, as in kpi.periodic.",
            "kpi": "KPI column name of kpi.periodic.",
            "value": "The KPI's value in the period.",
            "baseline": "The KPI's value in kpi.baseline.",
            "delta": "value - baseline.",
            "delta_pct": "delta / baseline as a fraction; null when the baseline is 0 or null.",
        },
        model="kpi/vs_baseline",
        preview="SELECT period_start, kpi, value, baseline, delta_pct FROM kpi.vs_baseline "
                "WHERE kpi IN ('revenue_won', 'win_rate', 'churn_rate') ORDER BY period_start DESC, kpi",
    ),
    Table(
        "kpi.periodic_by_segment",
        "The deal KPIs of kpi.periodic per owner, per pipeline and per segment (the optional region or team of "
        "deals), every period for every value seen.",
        {
            "segment_type": "What the rows are split by: 'owner_id', 'pipeline' or 'segment'.",
            "segment": "The owner, pipeline or segment (null: deals without one).",
            "period_start": "The period, as in kpi.periodic.",
            "phase": "'baseline' before go-live, 'post_go_live' from the period starting on or after it.",
            **{k.name: k.meaning for k in KPIS[:KPI_COLUMNS.index("sales_cycle_days_mean") + 1]},
            "low_volume": "Fewer than 10 deals closed in the period: its rates move with a single deal.",
        },
        model="kpi/periodic_by_segment",
        preview="SELECT segment_type, segment, period_start, deals_won, win_rate, revenue_won, low_volume "
                "FROM kpi.periodic_by_segment WHERE NOT low_volume ORDER BY period_start DESC, revenue_won DESC",
    ),
    Table(
        "kpi.data_quality",
        "Rows of each staging table valid or quarantined, by reason, per period of the row's own date: the "
        "accuracy and completeness of CRM data that moves ROI.",
        {
            "period_start": "The period of the row's own date (created_at, posted_on, ...); null when it did not "
                            "parse or is implausible.",
            "table_name": "The staging table.",
            "reason": "Null: valid rows; else every rule the rows broke, as in quarantine.rejected_rows.",
            "rows": "How many rows.",
        },
        model="kpi/data_quality",
        preview="SELECT table_name, reason, sum(rows) AS rows FROM kpi.data_quality GROUP BY ALL "
                "ORDER BY table_name, rows DESC",
    ),
    Table(
        "kpi.stage_durations",
        "Time in stage: per period and stage, how many deals left the stage and their median and mean days "
        "in it (from the stage history).",
        {
            "period_start": "The period in which deals left the stage.",
            "stage": "The stage (as the CRM names it).",
            "stage_exits": "Deals that left the stage in the period (deleted deals count nowhere).",
            "days_in_stage_median": "Median days from entering the stage to entering the next one.",
            "days_in_stage_mean": "Mean days from entering the stage to entering the next one.",
        },
        model="kpi/stage_durations",
        preview="SELECT period_start, stage, stage_exits, days_in_stage_median FROM kpi.stage_durations "
                "ORDER BY period_start DESC, stage",
    ),
    Table(
        "roi.counterfactual",
        "Expected revenue without the CRM, per complete period, under every counterfactual method the data "
        "supports (flat, seasonal, trend, control; see docs/roi-methods.md): the configured method's rows "
        "value roi.rolling, the others roi.sensitivity.",
        {
            "method": "The counterfactual method: flat, seasonal, trend or control.",
            "period_start": "A complete period of kpi.periodic.",
            "in_baseline": "The period lies inside the baseline window: the method is fitted on these rows.",
            "revenue_won": "The revenue the method values: every won deal's, or the treated group's under control.",
            "control_revenue_won": "Won revenue of the control group (method control; null otherwise).",
            "active_owners": "Owners with a deal created or closed in the period (of the treated group under "
                             "control); the scale of E with normalise_by active_owners.",
            "control_active_owners": "The same for the control group (method control; null otherwise).",
            "expected_revenue": "E: revenue without the CRM under the method (on baseline rows, the method's fit); "
                                "null when the method cannot tell.",
        },
        model="roi/counterfactual",
        preview="SELECT method, period_start, revenue_won, expected_revenue FROM roi.counterfactual "
                "WHERE NOT in_baseline ORDER BY period_start DESC, method",
    ),
    Table(
        "roi.rolling",
        "One row per complete period from the earlier of go-live and the first CRM cost: benefits, costs, "
        "cumulative ROI, trailing-12-month ROI, NPV and payback.",
        {
            "period_start": "A complete period, from the earlier of go-live and the first CRM cost.",
            "incremental_revenue": "revenue_won - expected_revenue (0 before go-live); with method flat, "
                                   "revenue_won - baseline revenue_won.",
            "benefit_revenue": "incremental_revenue x gross_margin x attribution_share.",
            "benefit_retention": "Customers saved so far x arpa_monthly x months per period x margin x share.",
            "benefit_cost_savings": "(baseline operating_cost - operating_cost) x attribution_share.",
            "benefit_total": "Sum of the three benefits x (1 - risk_adjustment).",
            "cost_total": "crm_cost of the period: every CRM cost, one-off or recurring, when posted.",
            "net_benefit": "benefit_total - cost_total.",
            "cumulative_benefit": "Running sum of benefit_total.",
            "cumulative_cost": "Running sum of cost_total.",
            "roi": "(cumulative_benefit - cumulative_cost) / cumulative_cost; null when the cost is 0.",
            "roi_pct": "100 x roi.",
            "gross_return_ratio": "cumulative_benefit / cumulative_cost (the source's before/after ratio).",
            "roi_trailing_12m": "Net ROI over the rows of the last 12 months up to this period.",
            "npv_cumulative": "Sum of net_benefit discounted at discount_rate per year from the first row.",
            "payback_reached": "cumulative_benefit >= cumulative_cost.",
            "expected_revenue": "E, revenue without the CRM under counterfactual.method (roi.counterfactual); "
                                "before go-live, the actual revenue (null before the baseline start).",
        },
        model="roi/rolling",
        sql_checks=(_RUNNING_SUMS, _EXPECTED_REVENUE_KNOWN),
        preview="SELECT period_start, benefit_total, cost_total, cumulative_benefit, cumulative_cost, roi, "
                "payback_reached FROM roi.rolling ORDER BY period_start DESC",
    ),
    Table(
        "roi.bootstrap",
        "One row per draw of the Poisson bootstrap behind roi.summary's percentiles: every won deal weighted "
        "Poisson(1), revenue, the counterfactual's fit and ROI computed again (retention, cost savings and "
        "costs held); empty with uncertainty.draws 0.",
        {
            "draw": "Draw number, 1..uncertainty.draws.",
            "incremental_revenue": "Cumulative incremental revenue after go-live in the draw; null when the "
                                   "method cannot be fitted in it.",
            "roi": "Net ROI at as_of in the draw.",
        },
        model="roi/bootstrap",
        preview="SELECT * FROM roi.bootstrap ORDER BY draw LIMIT 20",
    ),
    Table(
        "roi.sensitivity",
        "The ROI at as_of when one assumption moves and the others stay as configured (a tornado chart): "
        "gross_margin and attribution_share x0.8 and x1.2, risk_adjustment -0.1 and +0.1, and every "
        "counterfactual method the data supports.",
        {
            "assumption": "gross_margin, attribution_share, risk_adjustment or counterfactual.",
            "setting": "The move (x0.8, x1.2, -0.1, +0.1) or the counterfactual method.",
            "value": "The assumption's value under the move (capped to [0, 1]); null for a method.",
            "roi": "Net ROI at as_of under the move.",
            "roi_pct": "100 x roi.",
            "delta_roi": "roi - the configured ROI.",
        },
        model="roi/sensitivity",
        preview="SELECT * FROM roi.sensitivity ORDER BY abs(delta_roi) DESC",
    ),
    Table(
        "roi.tei",
        "The Forrester Total Economic Impact view: per year 0..tei.horizon_years, risk-adjusted benefits and "
        "costs, their present values and the cumulative NPV; years not fully observed projected from the "
        "trailing 12 months' run-rate.",
        {
            "year": "0: before go-live; y: [go_live + y-1 years, go_live + y years).",
            "year_start": "First day of the year (year 0: the first roi.rolling row, or go_live).",
            "year_end": "First day after the year.",
            "is_projected": "Part of the year is not observed yet: its months are projected from the run-rate "
                            "of the trailing 12 complete months after go-live.",
            "benefits": "Sum of benefit_total (risk-adjusted), plus the projection.",
            "costs": "Sum of cost_total, plus the projection, x (1 + tei.cost_risk_adjustment).",
            "pv_benefits": "benefits / (1 + discount_rate)^year.",
            "pv_costs": "costs / (1 + discount_rate)^year.",
            "cumulative_npv": "Running sum of pv_benefits - pv_costs.",
        },
        model="roi/tei",
        preview="SELECT * FROM roi.tei ORDER BY year",
    ),
    Table(
        "roi.summary",
        "The headline, one row: cumulative benefit and cost, ROI, ROI %, gross return ratio, payback period "
        "and NPV as of the run's cut-off.",
        {
            "as_of": "The date that closes the last period of the run.",
            "go_live": "The CRM go-live date.",
            "periods_since_go_live": "Complete periods starting on or after go-live.",
            "cumulative_benefit": "Latest cumulative_benefit in roi.rolling.",
            "cumulative_cost": "Latest cumulative_cost in roi.rolling.",
            "roi": "Latest net ROI (a fraction: 4 means benefits are five times the cost).",
            "roi_pct": "100 x roi.",
            "gross_return_ratio": "Latest cumulative_benefit / cumulative_cost.",
            "payback_period_months": "Months from go-live to the first period with payback; null if none.",
            "npv": "Latest npv_cumulative.",
            "counterfactual_method": "counterfactual.method: how expected revenue without the CRM was estimated.",
            "incremental_revenue": "Cumulative incremental revenue after go-live (sum over roi.rolling).",
            "incremental_revenue_p05": "5th percentile of incremental_revenue over the bootstrap draws "
                                       "(roi.bootstrap); null with uncertainty.draws 0.",
            "incremental_revenue_p50": "Median of incremental_revenue over the bootstrap draws.",
            "incremental_revenue_p95": "95th percentile of incremental_revenue over the bootstrap draws.",
            "roi_p05": "5th percentile of roi over the bootstrap draws.",
            "roi_p50": "Median of roi over the bootstrap draws.",
            "roi_p95": "95th percentile of roi over the bootstrap draws.",
            "control_pretrend_slope": "Method control: least-squares slope per year of ln(treated / control "
                                      "revenue) over the baseline (near 0: the groups moved in parallel).",
            "tei_npv": "TEI net present value: total pv_benefits - total pv_costs of roi.tei.",
            "tei_roi": "TEI ROI: tei_npv / total pv_costs.",
        },
        model="roi/summary",
        sql_checks=(_SUMMARY_IS_LAST_PERIOD,),
        preview="SELECT * FROM roi.summary",
    ),
    Table(
        "roi.assumptions",
        "Every setting that moves the ROI figures, as the run used it: the cut-off, go-live, baseline, "
        "margin, attribution, risk haircut, discount rate, retention value and the GL account map.",
        {
            "assumption": "The config key (a GL account as finance.accounts.<account>).",
            "value": "Its value in the run, as text; null when not set.",
        },
        model="roi/assumptions",
        preview="SELECT * FROM roi.assumptions",
    ),
)


_RUN = {
    "run_id": "The Dagster run that published the row.",
    "run_at": "When that run published it (UTC).",
}
# Every published run's headline and complete periods, kept from one analysts' copy to the next (publish.py):
# what a restated month (a deal reopened, a cost re-booked) changed is then visible (`crm-roi diff`).
HISTORY = (
    Table("history.roi_summary", "roi.summary as each run published it: the headline's history.",
          {**_RUN, **next(t for t in MARTS if t.name == "roi.summary").columns}),
    Table("history.kpi_periodic", "The complete periods of kpi.periodic as each run published them.",
          {**_RUN, "as_of": "The as_of of that run.", **next(t for t in MARTS if t.name == "kpi.periodic").columns}),
)


def _in_build_order(tables: tuple[Table, ...]) -> tuple[Table, ...]:
    """Tables ordered so that each comes after every table its SQL reads."""
    names = {t.name for t in tables}
    ordered: list[Table] = []
    while len(ordered) < len(tables):
        done = {t.name for t in ordered}
        ready = [t for t in tables if t.name not in done and t.reads & names <= done]
        if not ready:
            raise RegistryError(f"the models of {', '.join(sorted(names - done))} read each other in a cycle")
        ordered.append(ready[0])  # declaration order among the ready ones
    return tuple(ordered)


@dataclass(frozen=True)
class Registry:
    """The tables by layer, each layer in build order."""

    staging: tuple[Table, ...]
    marts: tuple[Table, ...]
    other: tuple[Table, ...] = field(default=())

    @property
    def tables(self) -> tuple[Table, ...]:
        return (*self.staging, *self.other, *self.marts)

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"no table {name!r} in the registry")

    def producers(self, table: str) -> list[str]:
        """The tables whose assets write `table`: itself, or every staging table for the quarantine."""
        return [t.name for t in self.staging] if table == QUARANTINE.name else [table]

    def describe(self, table: str, column: str) -> str | None:
        try:
            return self.table(table).columns.get(column)
        except KeyError:
            return None


def check_registry(registry: Registry) -> None:
    """Raise RegistryError where a model's SQL and its registry entry disagree."""
    known = {t.name for t in registry.tables} | {f"raw.{s}" for s in CANONICAL_STREAMS}
    for table in registry.tables:
        if table.model is None:
            continue
        selected = list(model_shape(table.model).columns)
        if table.schema == "staging":
            selected = [c for c in selected if c not in BUILD_COLUMNS]
        declared = list(table.columns)
        if missing := [c for c in declared if c not in selected]:
            hint = " (every KPI of kpi.periodic needs a baseline rule)" if table.name == "kpi.baseline" else ""
            raise RegistryError(f"sql/{table.model}.sql does not select {missing[0]}, which {table.name} "
                                f"declares in pipelines/models.py{hint}")
        if extra := [c for c in selected if c not in declared]:
            raise RegistryError(f"sql/{table.model}.sql selects {extra[0]}, which {table.name} does not declare "
                                "in pipelines/models.py (give it a meaning there)")
        if selected != declared:
            raise RegistryError(f"sql/{table.model}.sql selects the columns of {table.name} in another order "
                                f"than pipelines/models.py: {', '.join(selected)}")
        if table.key and not {"in_scope", "scoped_build"} <= model_shape(table.model).functions:
            raise RegistryError(f"sql/{table.model}.sql must read raw through in_scope() and scoped_build() "
                                "(the staging model contract in pipelines/transform.py)")
        if unknown := sorted(table.reads - known):
            raise RegistryError(f"sql/{table.model}.sql reads {unknown[0]}, which is no table of the registry")


REGISTRY = Registry(staging=_in_build_order(STAGING), marts=_in_build_order(MARTS), other=(QUARANTINE, *HISTORY))
check_registry(REGISTRY)
