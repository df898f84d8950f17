-- roi.bootstrap: one row per draw of a Poisson bootstrap over won deals, for the interval of
-- roi.summary. In each draw every won deal gets an independent Poisson(1) weight (so both the
-- number of deals and their amounts vary); revenue per period, the configured counterfactual's
-- fit, E and the ROI at as_of are computed again; retention and cost-savings benefits, active
-- owners and costs stay as they are. No rows when uncertainty.draws is 0.
WITH configured AS (
    SELECT *
    FROM roi.counterfactual
    WHERE method = getvariable('counterfactual_method')
      AND (in_baseline OR period_start >= getvariable('go_live'))
),
-- Amounts in millionths as integers: their weighted sums are exact, so a seed gives the same
-- percentiles however the threads split the work.
won AS (
    SELECT
        period_of(closed_at) AS period_start,
        in_control_group(segment, pipeline, owner_id) AS is_control,
        key_high(bootstrap_key(deal_id, created_at)) AS key_high,
        key_low(bootstrap_key(deal_id, created_at)) AS key_low,
        CAST(round(amount_base * 1e6) AS HUGEINT) AS micros
    FROM staging.deals
    WHERE NOT is_deleted AND is_won AND closed_at < getvariable('cutoff') AND amount_base IS NOT NULL
      AND period_of(closed_at) IN (SELECT period_start FROM configured)
),
draws AS (
    SELECT draw, draw_high(draw) AS draw_high, draw_low(draw) AS draw_low
    FROM range(1, getvariable('uncertainty_draws') + 1) AS t(draw)
),
weighted AS (
    SELECT draw, period_start, is_control, sum(weight_of_words(key_high, draw_high, key_low, draw_low) * micros) / 1e6 AS revenue
    FROM draws CROSS JOIN won
    GROUP BY ALL
),
by_group AS (
    SELECT
        draw, period_start,
        coalesce(sum(revenue) FILTER (WHERE NOT is_control), 0) AS treated,
        coalesce(sum(revenue) FILTER (WHERE is_control), 0) AS control
    FROM weighted
    GROUP BY ALL
),
inputs AS (
    SELECT
        d.draw,
        c.method,
        c.period_start,
        c.in_baseline,
        CASE WHEN c.method = 'control' THEN coalesce(g.treated, 0)
             ELSE coalesce(g.treated, 0) + coalesce(g.control, 0) END AS revenue_won,
        CASE WHEN c.method = 'control' THEN coalesce(g.control, 0) END AS control_revenue_won,
        c.active_owners,
        c.control_active_owners
    FROM draws AS d
    CROSS JOIN configured AS c
    LEFT JOIN by_group AS g ON g.draw = d.draw AND g.period_start = c.period_start
),
-- A draw in which the method cannot be fitted (E null after go-live) has no result.
per_draw AS (
    SELECT
        e.draw,
        CASE WHEN count(*) = count(e.expected_revenue) THEN sum(e.revenue_won - e.expected_revenue) END
            AS incremental_revenue
    FROM expected_revenue('inputs') AS e
    JOIN roi.rolling AS r ON r.period_start = e.period_start
    WHERE e.period_start >= getvariable('go_live')
    GROUP BY e.draw
),
totals AS (
    SELECT
        sum(benefit_retention) AS retention,
        sum(benefit_cost_savings) AS savings,
        sum(cost_total) AS cost
    FROM roi.rolling
)
SELECT
    draw,
    incremental_revenue,
    roi_under(incremental_revenue, retention, savings, cost, getvariable('gross_margin'),
              getvariable('attribution_share'), getvariable('risk_adjustment')) AS roi
FROM per_draw, totals
ORDER BY draw
