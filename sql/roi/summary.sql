-- roi.summary: the headline, one row: where the rolling ROI stands as of the
-- run's cut-off, and when (if yet) cumulative benefit caught up with cost; the
-- counterfactual it rests on, the bootstrap interval around it, and the TEI view.
WITH latest AS (
    SELECT * FROM roi.rolling ORDER BY period_start DESC LIMIT 1
),
since_go_live AS (
    SELECT row_number() OVER (ORDER BY period_start) AS n, payback_reached
    FROM roi.rolling
    WHERE period_start >= getvariable('go_live')
),
bootstrap_interval AS (
    SELECT
        quantile_cont(incremental_revenue, 0.05) AS incremental_revenue_p05,
        quantile_cont(incremental_revenue, 0.50) AS incremental_revenue_p50,
        quantile_cont(incremental_revenue, 0.95) AS incremental_revenue_p95,
        quantile_cont(roi, 0.05) AS roi_p05,
        quantile_cont(roi, 0.50) AS roi_p50,
        quantile_cont(roi, 0.95) AS roi_p95
    FROM roi.bootstrap
),
-- Parallel trends: the yearly slope of ln(treated / control revenue) over the baseline (near 0 is good).
pretrend AS (
    SELECT CASE WHEN count(*) > 1 THEN regr_slope(ln_ratio, t) * periods_per_year() END AS slope
    FROM (
        SELECT ln(revenue_won / control_revenue_won) AS ln_ratio,
               periods_between(getvariable('baseline_start'), period_start) AS t
        FROM roi.counterfactual
        WHERE method = 'control' AND in_baseline AND revenue_won > 0 AND control_revenue_won > 0
    )
),
tei AS (
    SELECT
        CASE WHEN count(*) = count(pv_benefits - pv_costs) THEN sum(pv_benefits) - sum(pv_costs) END AS npv,
        sum(pv_costs) AS pv_costs
    FROM roi.tei
)
SELECT
    CAST(getvariable('as_of') AS DATE) AS as_of,
    CAST(getvariable('go_live') AS DATE) AS go_live,
    (SELECT count(*) FROM kpi.periodic WHERE is_complete AND period_start >= getvariable('go_live'))
        AS periods_since_go_live,
    latest.cumulative_benefit,
    latest.cumulative_cost,
    latest.roi,
    latest.roi_pct,
    latest.gross_return_ratio,
    (SELECT min(n) FROM since_go_live WHERE payback_reached) * getvariable('months_per_period')
        AS payback_period_months,
    latest.npv_cumulative AS npv,
    CAST(getvariable('counterfactual_method') AS VARCHAR) AS counterfactual_method,
    (SELECT sum(incremental_revenue) FROM roi.rolling WHERE period_start >= getvariable('go_live'))
        AS incremental_revenue,
    bootstrap_interval.incremental_revenue_p05,
    bootstrap_interval.incremental_revenue_p50,
    bootstrap_interval.incremental_revenue_p95,
    bootstrap_interval.roi_p05,
    bootstrap_interval.roi_p50,
    bootstrap_interval.roi_p95,
    CASE WHEN getvariable('counterfactual_method') = 'control' THEN pretrend.slope END AS control_pretrend_slope,
    tei.npv AS tei_npv,
    tei.npv / nullif(tei.pv_costs, 0) AS tei_roi
FROM (SELECT 1) AS one
LEFT JOIN latest ON true
CROSS JOIN bootstrap_interval
CROSS JOIN pretrend
CROSS JOIN tei
