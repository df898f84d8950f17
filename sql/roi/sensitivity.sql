-- roi.sensitivity: the ROI at as_of when one assumption moves and the rest stay as configured,
-- ready for a tornado chart: gross_margin and attribution_share x0.8 and x1.2 (capped at 1),
-- risk_adjustment -0.1 and +0.1 (within [0, 1]), and every counterfactual method the data
-- supports. delta_roi is against the configured ROI.
WITH totals AS (
    SELECT
        sum(benefit_retention) AS retention,
        sum(benefit_cost_savings) AS savings,
        sum(cost_total) AS cost
    FROM roi.rolling
),
-- Cumulative incremental revenue after go-live under each method, counted as roi.rolling counts it.
by_method AS (
    SELECT
        m.method,
        coalesce(sum(coalesce(c.revenue_won - c.expected_revenue, 0))
                 FILTER (WHERE r.period_start >= getvariable('go_live')), 0) AS incremental
    FROM (SELECT DISTINCT method FROM roi.counterfactual) AS m
    LEFT JOIN roi.counterfactual AS c USING (method)
    LEFT JOIN roi.rolling AS r ON r.period_start = c.period_start
    GROUP BY m.method
),
configured AS (
    SELECT
        incremental,
        getvariable('gross_margin') AS margin,
        getvariable('attribution_share') AS share,
        getvariable('risk_adjustment') AS risk
    FROM by_method
    WHERE method = getvariable('counterfactual_method')
),
alternatives (position, assumption, setting, value, margin, share, risk, incremental) AS (
    SELECT 1, 'gross_margin', 'x0.8', least(1, margin * 0.8), least(1, margin * 0.8), share, risk, incremental
    FROM configured
    UNION ALL
    SELECT 2, 'gross_margin', 'x1.2', least(1, margin * 1.2), least(1, margin * 1.2), share, risk, incremental
    FROM configured
    UNION ALL
    SELECT 3, 'attribution_share', 'x0.8', least(1, share * 0.8), margin, least(1, share * 0.8), risk, incremental
    FROM configured
    UNION ALL
    SELECT 4, 'attribution_share', 'x1.2', least(1, share * 1.2), margin, least(1, share * 1.2), risk, incremental
    FROM configured
    UNION ALL
    SELECT 5, 'risk_adjustment', '-0.1', greatest(0, risk - 0.1), margin, share, greatest(0, risk - 0.1), incremental
    FROM configured
    UNION ALL
    SELECT 6, 'risk_adjustment', '+0.1', least(1, risk + 0.1), margin, share, least(1, risk + 0.1), incremental
    FROM configured
    UNION ALL
    SELECT 7, 'counterfactual', b.method, NULL, margin, share, risk, b.incremental
    FROM by_method AS b, configured
)
SELECT
    a.assumption,
    a.setting,
    a.value,
    roi_under(a.incremental, t.retention, t.savings, t.cost, a.margin, a.share, a.risk) AS roi,
    100 * roi AS roi_pct,
    roi - roi_under(c.incremental, t.retention, t.savings, t.cost, c.margin, c.share, c.risk) AS delta_roi
FROM alternatives AS a, totals AS t, configured AS c
ORDER BY a.position, CASE a.setting WHEN 'flat' THEN 1 WHEN 'seasonal' THEN 2 WHEN 'trend' THEN 3 ELSE 4 END
