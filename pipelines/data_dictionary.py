"""What every output column means: shown in the Dagster UI and mirrored in the README.

One source for column descriptions, so the UI and the docs cannot disagree; a
test fails when a table gains a column without a description here.
"""

from __future__ import annotations

_KPIS = {
    "deals_created": "Deals created in the period (deleted deals count nowhere).",
    "deals_won": "Deals closed won in the period (by closed_at).",
    "deals_lost": "Deals closed and not won in the period.",
    "win_rate": "deals_won / (deals_won + deals_lost); null when nothing closed.",
    "revenue_won": "Sum of amount_base of deals won in the period (a null amount adds 0).",
    "avg_deal_size": "revenue_won / won deals that have an amount.",
    "sales_cycle_days_median": "Median (interpolated) calendar days from created to closed, won deals.",
    "sales_cycle_days_mean": "Mean calendar days from created to closed, won deals.",
    "customers_active_start": "Customers started before the period and not churned before it.",
    "customers_new": "Customers started in the period.",
    "customers_churned": "Customers active at the period's start who churned in it.",
    "churn_rate": "customers_churned / customers_active_start; null when none were active.",
    "retention_rate": "1 - churn_rate.",
    "sales_marketing_spend": "GL lines in category sales_marketing posted in the period (base currency).",
    "cac": "sales_marketing_spend / customers_new; null without new customers.",
    "csat_avg": "Mean satisfaction score of responses in the period.",
    "adoption_rate": "Active CRM users / licensed seats (summed over usage rows in the period).",
    "operating_cost": "GL lines in category operating_cost posted in the period (base currency).",
    "crm_cost": "GL lines in every crm_* category posted in the period (base currency).",
}

_BASELINE_KPIS = {
    col: text + (" Baseline: mean per period." if col in {
        "deals_created", "deals_won", "deals_lost", "revenue_won", "customers_active_start",
        "customers_new", "customers_churned", "sales_marketing_spend", "operating_cost", "crm_cost",
    } else " Baseline: pooled over the window.")
    for col, text in _KPIS.items()
}

DICTIONARY: dict[str, dict[str, str]] = {
    "kpi.periodic": {
        "period_start": "First day of the calendar period (month, quarter or ISO week), UTC.",
        "period_end": "First day after the period (exclusive).",
        "phase": "'baseline' before go-live, 'post_go_live' from the period starting on or after it.",
        "is_complete": "True when period_end <= as_of + 1 day; the current period is flagged false.",
        **_KPIS,
    },
    "kpi.baseline": {
        "window_start": "Start of the first period lying wholly inside the baseline window.",
        "window_end": "End (exclusive) of the last such period; at most go_live.",
        "periods": "Number of periods in the window.",
        **_BASELINE_KPIS,
    },
    "kpi.vs_baseline": {
        "period_start": "The period, as in kpi.periodic.",
        "kpi": "KPI column name of kpi.periodic.",
        "value": "The KPI's value in the period.",
        "baseline": "The KPI's value in kpi.baseline.",
        "delta": "value - baseline.",
        "delta_pct": "delta / baseline as a fraction; null when the baseline is 0 or null.",
    },
    "kpi.stage_durations": {
        "period_start": "The period in which deals left the stage.",
        "stage": "The stage (as the CRM names it).",
        "stage_exits": "Deals that left the stage in the period (deleted deals count nowhere).",
        "days_in_stage_median": "Median days from entering the stage to entering the next one.",
        "days_in_stage_mean": "Mean days from entering the stage to entering the next one.",
    },
    "roi.rolling": {
        "period_start": "A complete period, from the earlier of go-live and the first CRM cost.",
        "incremental_revenue": "revenue_won - baseline revenue_won (0 before go-live).",
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
    },
    "roi.summary": {
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
    },
    "quarantine.rejected_rows": {
        "table_name": "Staging table the row was meant for.",
        "source": "Configured source it came from.",
        "key": "The row's key as landed (deal_id, customer_id, ...).",
        "reason": "Every row rule it failed, separated by '; '.",
        "payload": "The row as landed, as JSON, with file name and row number.",
        "file_name": "Export file the row came from.",
        "row_number": "Data row number within that file (1 = first row after the header).",
        "batch_id": "Load batch that landed the row.",
        "rejected_at": "When the staging build rejected it (UTC).",
    },
}


def describe_column(table: str, column: str) -> str | None:
    return DICTIONARY.get(table, {}).get(column)
