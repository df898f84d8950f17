-- roi.counterfactual: what revenue would have been without the CRM, per complete period, under
-- every counterfactual method the data supports (the formulas: expected_revenue in
-- sql/roi_macros.sql). The configured method's rows feed roi.rolling, the others roi.sensitivity.
-- A configured method the data cannot support stops the run with the reason.
WITH periods AS (
    SELECT
        period_start,
        period_start >= getvariable('baseline_start') AND period_end <= getvariable('go_live') AS in_baseline,
        revenue_won
    FROM kpi.periodic
    WHERE is_complete
),
live_deals AS (
    SELECT *, in_control_group(segment, pipeline, owner_id) AS is_control
    FROM staging.deals
    WHERE NOT is_deleted
),
group_revenue AS (
    SELECT
        period_of(closed_at) AS period_start,
        coalesce(sum(amount_base) FILTER (WHERE NOT is_control), 0) AS treated_revenue,
        coalesce(sum(amount_base) FILTER (WHERE is_control), 0) AS control_revenue
    FROM live_deals
    WHERE is_won AND closed_at < getvariable('cutoff')
    GROUP BY ALL
),
-- Active owners: owners with a deal created or closed in the period.
owner_events AS (
    SELECT owner_id, is_control, period_of(created_at) AS period_start
    FROM live_deals WHERE created_at < getvariable('cutoff')
    UNION ALL
    SELECT owner_id, is_control, period_of(closed_at)
    FROM live_deals WHERE is_closed AND closed_at < getvariable('cutoff')
),
owners AS (
    SELECT
        period_start,
        count(DISTINCT owner_id) AS all_owners,
        count(DISTINCT owner_id) FILTER (WHERE NOT is_control) AS treated_owners,
        count(DISTINCT owner_id) FILTER (WHERE is_control) AS control_owners
    FROM owner_events
    GROUP BY ALL
),
series AS (
    SELECT p.*, coalesce(g.treated_revenue, 0) AS treated_revenue, coalesce(g.control_revenue, 0) AS control_revenue,
           coalesce(o.all_owners, 0) AS all_owners, coalesce(o.treated_owners, 0) AS treated_owners,
           coalesce(o.control_owners, 0) AS control_owners,
           periods_between(min(period_start) FILTER (WHERE in_baseline) OVER (), period_start) AS t,
           count(*) FILTER (WHERE in_baseline) OVER () AS baseline_periods
    FROM periods AS p
    LEFT JOIN group_revenue AS g USING (period_start)
    LEFT JOIN owners AS o USING (period_start)
),
baseline AS (
    SELECT
        count(*) AS periods,
        min(period_start) FILTER (WHERE revenue_won <= 0) AS unsold_period,
        sum(revenue_won) FILTER (WHERE t >= baseline_periods - 2 * periods_per_year()
                                   AND t < baseline_periods - periods_per_year()) AS year_before_revenue,
        avg(control_revenue) AS control_revenue
    FROM series
    WHERE in_baseline
),
groups AS (  -- the deals that exist as of as_of
    SELECT count(*) FILTER (WHERE is_control) AS control_deals, count(*) FILTER (WHERE NOT is_control) AS treated_deals
    FROM live_deals
    WHERE created_at < getvariable('cutoff')
),
-- Why each method cannot be used on this data (null: it can).
problems (method, problem) AS (
    SELECT 'flat', NULL
    UNION ALL
    SELECT 'seasonal', CASE
        WHEN getvariable('period') = 'week' THEN 'counterfactual.method: seasonal needs month or quarter periods'
        WHEN periods < periods_per_year() THEN 'counterfactual.method: seasonal needs 12 baseline months'
        WHEN periods >= 2 * periods_per_year() AND NOT year_before_revenue > 0
            THEN 'counterfactual.method: seasonal divides by the won revenue of the year before the last '
                 || 'baseline year, and that year has none (use trend or flat)'
        END
    FROM baseline
    UNION ALL
    SELECT 'trend', CASE
        WHEN periods < 3 THEN 'counterfactual.method: trend needs at least 3 baseline periods'
        WHEN unsold_period IS NOT NULL
            THEN 'counterfactual.method: trend fits ln revenue, so it needs won revenue above 0 in every baseline period, and '
                 || strftime(unsold_period, '%Y-%m-%d') || ' has none (use seasonal or flat)'
        END
    FROM baseline
    UNION ALL
    SELECT 'control', CASE
        WHEN getvariable('control_column') IS NULL THEN 'counterfactual.control: method control needs it'
        WHEN control_deals = 0
            THEN 'counterfactual.control: no deal has ' || getvariable('control_column') || ' in '
                 || CAST(getvariable('control_values') AS VARCHAR) || ', so the control group is empty'
        WHEN treated_deals = 0
            THEN 'counterfactual.control: every deal has ' || getvariable('control_column') || ' in '
                 || CAST(getvariable('control_values') AS VARCHAR) || ', so no deal is treated'
        WHEN NOT baseline.control_revenue > 0
            THEN 'counterfactual.control: the control group won no revenue in the baseline window, so it cannot scale the '
                 || 'treated baseline'
        END
    FROM baseline, groups
),
supported AS (
    SELECT method FROM problems
    WHERE CASE WHEN problem IS NULL THEN true
               WHEN method = getvariable('counterfactual_method')
               THEN unsupported_by_data(problem)
               ELSE false END
),
inputs AS (
    SELECT
        0 AS draw,
        m.method,
        s.period_start,
        s.in_baseline,
        CASE WHEN m.method = 'control' THEN s.treated_revenue ELSE s.revenue_won END AS revenue_won,
        CASE WHEN m.method = 'control' THEN s.control_revenue END AS control_revenue_won,
        CASE WHEN m.method = 'control' THEN s.treated_owners ELSE s.all_owners END AS active_owners,
        CASE WHEN m.method = 'control' THEN s.control_owners END AS control_active_owners
    FROM supported AS m CROSS JOIN series AS s
)
SELECT
    method,
    period_start,
    in_baseline,
    revenue_won,
    control_revenue_won,
    active_owners,
    control_active_owners,
    expected_revenue
FROM expected_revenue('inputs')
ORDER BY CASE method WHEN 'flat' THEN 1 WHEN 'seasonal' THEN 2 WHEN 'trend' THEN 3 ELSE 4 END, period_start
