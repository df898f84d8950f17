-- kpi.periodic: one row per calendar period from the one holding the baseline
-- start to the one holding as_of. An event counts only before the cut-off
-- (as_of + 1 day, UTC); deleted deals count nowhere.
WITH periods AS (
    SELECT * FROM period_spine(getvariable('baseline_start'))
),
live_deals AS (
    SELECT * FROM staging.deals WHERE NOT is_deleted
),
created AS (
    SELECT period_of(created_at) AS period_start, count(*) AS deals_created
    FROM live_deals
    WHERE created_at < getvariable('cutoff')
    GROUP BY ALL
),
closed AS (
    SELECT
        period_of(closed_at) AS period_start,
        count(*) FILTER (WHERE is_won) AS deals_won,
        count(*) FILTER (WHERE NOT is_won) AS deals_lost,
        coalesce(sum(amount_base) FILTER (WHERE is_won), 0) AS revenue_won,
        count(amount_base) FILTER (WHERE is_won) AS won_with_amount,
        quantile_cont(date_diff('day', CAST(created_at AS DATE), CAST(closed_at AS DATE)), 0.5)
            FILTER (WHERE is_won) AS sales_cycle_days_median,
        avg(date_diff('day', CAST(created_at AS DATE), CAST(closed_at AS DATE)))
            FILTER (WHERE is_won) AS sales_cycle_days_mean
    FROM live_deals
    WHERE is_closed AND closed_at < getvariable('cutoff')
    GROUP BY ALL
),
customers AS (
    SELECT
        started_at,
        CASE WHEN churned_at < getvariable('cutoff') THEN churned_at END AS churned_at
    FROM staging.customers
    WHERE started_at < getvariable('cutoff') AND NOT is_deleted
),
starts AS (
    SELECT period_of(started_at) AS period_start, count(*) AS n FROM customers GROUP BY ALL
),
churns AS (
    SELECT period_of(churned_at) AS period_start, count(*) AS n
    FROM customers WHERE churned_at IS NOT NULL GROUP BY ALL
),
customer_flows AS (
    -- Churn is never before start (such rows are rejected), so the customers
    -- active at a period's start are those started before it less those churned before it.
    -- With no customer rows landed from any source, the customer KPIs are null (unknown), not 0.
    SELECT
        p.period_start,
        (SELECT coalesce(sum(n), 0) FROM starts AS s WHERE s.period_start < p.period_start)
          - (SELECT coalesce(sum(n), 0) FROM churns AS c WHERE c.period_start < p.period_start)
            AS customers_active_start,
        (SELECT coalesce(sum(n), 0) FROM starts AS s WHERE s.period_start = p.period_start)
            AS customers_new,
        (SELECT count(*) FROM customers AS c
          WHERE period_of(c.churned_at) = p.period_start AND c.started_at < p.period_start)
            AS customers_churned
    FROM periods AS p
    WHERE EXISTS (SELECT 1 FROM raw.customers)
),
finance AS (
    SELECT
        period_of(posted_on) AS period_start,
        coalesce(sum(amount_base) FILTER (WHERE category = 'sales_marketing'), 0) AS sales_marketing_spend,
        coalesce(sum(amount_base) FILTER (WHERE category = 'operating_cost'), 0) AS operating_cost,
        coalesce(sum(amount_base) FILTER (WHERE category LIKE 'crm\_%' ESCAPE '\'), 0) AS crm_cost
    FROM staging.finance_gl
    WHERE posted_on < getvariable('cutoff')
    GROUP BY ALL
),
satisfaction AS (
    SELECT period_of(responded_at) AS period_start, avg(score) AS csat_avg
    FROM staging.csat WHERE responded_at < getvariable('cutoff') GROUP BY ALL
),
-- The open pipeline at each period's start: deals created before it less those closed before
-- it (a deal closes no earlier than the day it was created), in counts and base-currency value.
pipeline_events AS (
    SELECT period_of(created_at) AS period_start, count(*) AS opened, coalesce(sum(amount_base), 0) AS opened_value,
           0 AS closed, 0 AS closed_value
    FROM live_deals WHERE created_at < getvariable('cutoff') GROUP BY ALL
    UNION ALL
    SELECT period_of(closed_at), 0, 0, count(*), coalesce(sum(amount_base), 0)
    FROM live_deals WHERE is_closed AND closed_at < getvariable('cutoff') GROUP BY ALL
),
open_pipeline AS (
    SELECT
        p.period_start,
        (SELECT coalesce(sum(opened - closed), 0) FROM pipeline_events AS e WHERE e.period_start < p.period_start)
            AS open_deals_start,
        (SELECT coalesce(sum(opened_value - closed_value), 0) FROM pipeline_events AS e
          WHERE e.period_start < p.period_start) AS open_pipeline_value_start
    FROM periods AS p
),
adoption AS (
    SELECT period_of(period_start) AS period_start,
           sum(active_users) / nullif(sum(licensed_seats), 0) AS adoption_rate
    FROM staging.crm_usage WHERE period_start < getvariable('cutoff') GROUP BY ALL
)
SELECT
    p.period_start,
    p.period_end,
    CASE WHEN p.period_start >= getvariable('go_live') THEN 'post_go_live' ELSE 'baseline' END AS phase,
    p.period_end <= getvariable('cutoff') AS is_complete,
    coalesce(created.deals_created, 0) AS deals_created,
    coalesce(closed.deals_won, 0) AS deals_won,
    coalesce(closed.deals_lost, 0) AS deals_lost,
    closed.deals_won / nullif(closed.deals_won + closed.deals_lost, 0) AS win_rate,
    coalesce(closed.revenue_won, 0) AS revenue_won,
    closed.revenue_won / nullif(closed.won_with_amount, 0) AS avg_deal_size,
    closed.sales_cycle_days_median,
    closed.sales_cycle_days_mean,
    cf.customers_active_start,
    cf.customers_new,
    cf.customers_churned,
    cf.customers_churned / nullif(cf.customers_active_start, 0) AS churn_rate,
    1 - cf.customers_churned / nullif(cf.customers_active_start, 0) AS retention_rate,
    coalesce(finance.sales_marketing_spend, 0) AS sales_marketing_spend,
    coalesce(finance.sales_marketing_spend, 0) / nullif(cf.customers_new, 0) AS cac,
    satisfaction.csat_avg,
    adoption.adoption_rate,
    coalesce(finance.operating_cost, 0) AS operating_cost,
    coalesce(finance.crm_cost, 0) AS crm_cost,
    op.open_deals_start,
    op.open_pipeline_value_start,
    pipeline_velocity(op.open_deals_start, closed.deals_won / nullif(closed.deals_won + closed.deals_lost, 0),
                      closed.revenue_won / nullif(closed.won_with_amount, 0), closed.sales_cycle_days_mean)
        AS pipeline_velocity
FROM periods AS p
LEFT JOIN created USING (period_start)
LEFT JOIN closed USING (period_start)
LEFT JOIN customer_flows AS cf USING (period_start)
LEFT JOIN finance USING (period_start)
LEFT JOIN satisfaction USING (period_start)
LEFT JOIN adoption USING (period_start)
LEFT JOIN open_pipeline AS op USING (period_start)
ORDER BY p.period_start
