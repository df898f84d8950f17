-- kpi.baseline: the KPIs before go-live, over the periods lying wholly inside
-- [go_live - baseline_months, go_live). Flows are means per period; rates are
-- pooled over the window (not means of monthly rates, which overweight quiet months).
WITH window_periods AS (
    SELECT * FROM kpi.periodic
    WHERE period_start >= getvariable('baseline_start') AND period_end <= getvariable('go_live')
),
bounds AS (
    SELECT min(period_start) AS window_start, max(period_end) AS window_end, count(*) AS periods
    FROM window_periods
),
won_deals AS (
    SELECT amount_base, date_diff('day', CAST(created_at AS DATE), CAST(closed_at AS DATE)) AS cycle_days
    FROM staging.deals, bounds
    WHERE NOT is_deleted AND is_closed AND is_won
      AND closed_at >= window_start AND closed_at < window_end AND closed_at < getvariable('cutoff')
),
responses AS (
    SELECT avg(score) AS csat_avg
    FROM staging.csat, bounds
    WHERE responded_at >= window_start AND responded_at < window_end
      AND responded_at < getvariable('cutoff')
),
usage AS (
    SELECT sum(active_users) / nullif(sum(licensed_seats), 0) AS adoption_rate
    FROM staging.crm_usage, bounds
    WHERE period_start >= window_start AND period_start < window_end
      AND period_start < getvariable('cutoff')
),
pooled AS (
    SELECT
        avg(deals_created) AS deals_created,
        avg(deals_won) AS deals_won,
        avg(deals_lost) AS deals_lost,
        sum(deals_won) / nullif(sum(deals_won) + sum(deals_lost), 0) AS win_rate,
        avg(revenue_won) AS revenue_won,
        avg(customers_active_start) AS customers_active_start,
        avg(customers_new) AS customers_new,
        avg(customers_churned) AS customers_churned,
        sum(customers_churned) / nullif(sum(customers_active_start), 0) AS churn_rate,
        avg(sales_marketing_spend) AS sales_marketing_spend,
        sum(sales_marketing_spend) / nullif(sum(customers_new), 0) AS cac,
        avg(operating_cost) AS operating_cost,
        avg(crm_cost) AS crm_cost,
        avg(open_deals_start) AS open_deals_start,
        avg(open_pipeline_value_start) AS open_pipeline_value_start
    FROM window_periods
)
SELECT
    bounds.window_start,
    bounds.window_end,
    bounds.periods,
    pooled.deals_created,
    pooled.deals_won,
    pooled.deals_lost,
    pooled.win_rate,
    pooled.revenue_won,
    (SELECT sum(amount_base) / nullif(count(amount_base), 0) FROM won_deals) AS avg_deal_size,
    (SELECT quantile_cont(cycle_days, 0.5) FROM won_deals) AS sales_cycle_days_median,
    (SELECT avg(cycle_days) FROM won_deals) AS sales_cycle_days_mean,
    pooled.customers_active_start,
    pooled.customers_new,
    pooled.customers_churned,
    pooled.churn_rate,
    1 - pooled.churn_rate AS retention_rate,
    pooled.sales_marketing_spend,
    pooled.cac,
    responses.csat_avg,
    usage.adoption_rate,
    pooled.operating_cost,
    pooled.crm_cost,
    pooled.open_deals_start,
    pooled.open_pipeline_value_start,
    pipeline_velocity(pooled.open_deals_start, pooled.win_rate,
                      (SELECT sum(amount_base) / nullif(count(amount_base), 0) FROM won_deals),
                      (SELECT avg(cycle_days) FROM won_deals)) AS pipeline_velocity
FROM bounds, pooled, responses, usage
