-- roi.rolling: one row per complete period from the earlier of go-live and the
-- first CRM cost, re-evaluated every run. Revenue is valued against the configured
-- counterfactual (roi.counterfactual), the other benefits against the baseline, at
-- gross margin and the CRM's attribution share, with a risk haircut; every CRM cost
-- counts in the period it is posted.
WITH crm_costs AS (
    SELECT period_of(posted_on) AS period_start, sum(amount_base) AS cost, min(posted_on) AS first_posted
    FROM staging.finance_gl
    WHERE category LIKE 'crm\_%' ESCAPE '\' AND posted_on < getvariable('cutoff')
    GROUP BY ALL
),
periods AS (
    SELECT * FROM period_spine(least(
        getvariable('go_live'),
        coalesce((SELECT min(first_posted) FROM crm_costs), getvariable('go_live'))))
    WHERE period_end <= getvariable('cutoff')
),
period_rows AS (
    SELECT
        p.period_start,
        p.period_start >= getvariable('go_live') AS is_post,
        row_number() OVER (ORDER BY p.period_start) - 1 AS k,
        cf.revenue_won, cf.expected_revenue AS counterfactual_revenue,
        k_p.churn_rate, k_p.customers_active_start, k_p.operating_cost,
        coalesce(c.cost, 0) AS cost_total
    FROM periods AS p
    LEFT JOIN kpi.periodic AS k_p USING (period_start)
    LEFT JOIN roi.counterfactual AS cf
           ON cf.period_start = p.period_start AND cf.method = getvariable('counterfactual_method')
    LEFT JOIN crm_costs AS c USING (period_start)
),
benefits AS (
    SELECT
        r.*,
        -- Before go-live E is the actual revenue: nothing is incremental.
        CASE WHEN is_post THEN r.counterfactual_revenue ELSE r.revenue_won END AS expected_revenue,
        CASE WHEN is_post THEN coalesce(r.revenue_won - r.counterfactual_revenue, 0) ELSE 0 END
            AS incremental_revenue,
        CASE WHEN is_post
             THEN coalesce((b.churn_rate - r.churn_rate) * r.customers_active_start, 0) ELSE 0 END
            AS customers_saved,
        CASE WHEN is_post
             THEN coalesce(b.operating_cost - r.operating_cost, 0) * getvariable('attribution_share')
             ELSE 0 END AS benefit_cost_savings
    FROM period_rows AS r CROSS JOIN kpi.baseline AS b
),
valued AS (
    SELECT
        *,
        incremental_revenue * getvariable('gross_margin') * getvariable('attribution_share')
            AS benefit_revenue,
        CASE WHEN getvariable('arpa_monthly') IS NULL THEN 0
             ELSE sum(customers_saved) OVER (ORDER BY period_start)
                  * getvariable('arpa_monthly') * getvariable('months_per_period')
                  * getvariable('gross_margin') * getvariable('attribution_share')
        END AS benefit_retention
    FROM benefits
),
totals AS (
    SELECT
        *,
        (benefit_revenue + benefit_retention + benefit_cost_savings)
            * (1 - getvariable('risk_adjustment')) AS benefit_total
    FROM valued
),
running AS (
    SELECT
        *,
        benefit_total - cost_total AS net_benefit,
        sum(benefit_total) OVER (ORDER BY period_start) AS cumulative_benefit,
        sum(cost_total) OVER (ORDER BY period_start) AS cumulative_cost,
        sum((benefit_total - cost_total)
            / pow(1 + getvariable('discount_rate'), k * getvariable('months_per_period') / 12))
            OVER (ORDER BY period_start) AS npv_cumulative
    FROM totals
),
trailing_12m AS (
    SELECT
        cur.period_start,
        (sum(t.benefit_total) - sum(t.cost_total)) / nullif(sum(t.cost_total), 0) AS roi_trailing_12m
    FROM running AS cur
    JOIN running AS t
      ON t.period_start <= cur.period_start
     AND t.period_start > cur.period_start - INTERVAL 12 MONTH
    GROUP BY cur.period_start
)
SELECT
    period_start,
    incremental_revenue,
    benefit_revenue,
    benefit_retention,
    benefit_cost_savings,
    benefit_total,
    cost_total,
    net_benefit,
    cumulative_benefit,
    cumulative_cost,
    (cumulative_benefit - cumulative_cost) / nullif(cumulative_cost, 0) AS roi,
    100 * (cumulative_benefit - cumulative_cost) / nullif(cumulative_cost, 0) AS roi_pct,
    cumulative_benefit / nullif(cumulative_cost, 0) AS gross_return_ratio,
    roi_trailing_12m,
    npv_cumulative,
    cumulative_benefit >= cumulative_cost AS payback_reached,
    expected_revenue
FROM running
JOIN trailing_12m USING (period_start)
ORDER BY period_start
