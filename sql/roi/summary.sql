-- roi.summary: the headline, one row: where the rolling ROI stands as of the
-- run's cut-off, and when (if yet) cumulative benefit caught up with cost.
WITH latest AS (
    SELECT * FROM roi.rolling ORDER BY period_start DESC LIMIT 1
),
since_go_live AS (
    SELECT row_number() OVER (ORDER BY period_start) AS n, payback_reached
    FROM roi.rolling
    WHERE period_start >= getvariable('go_live')
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
    latest.npv_cumulative AS npv
FROM (SELECT 1) AS one
LEFT JOIN latest ON true
