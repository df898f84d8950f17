-- kpi.periodic_by_segment: the deal KPIs of kpi.periodic per owner, per pipeline and per segment
-- (the optional region/team column of deals), every period of the spine for every value seen, so
-- a chart of one segment has no gaps. A value with fewer than 10 deals closed in a period is
-- flagged low_volume: its rates move with a single deal.
WITH periods AS (
    SELECT * FROM period_spine(getvariable('baseline_start'))
),
by_segment AS (
    SELECT segment_type, segment, created_at, closed_at, is_closed, is_won, amount_base
    FROM (SELECT owner_id, pipeline, segment, created_at, closed_at, is_closed, is_won, amount_base
          FROM staging.deals WHERE NOT is_deleted)
    UNPIVOT INCLUDE NULLS (segment FOR segment_type IN (owner_id, pipeline, segment))
),
segments AS (
    SELECT DISTINCT segment_type, segment FROM by_segment
    WHERE segment_type <> 'segment' OR segment IS NOT NULL
),
created AS (
    SELECT segment_type, segment, period_of(created_at) AS period_start, count(*) AS deals_created
    FROM by_segment WHERE created_at < getvariable('cutoff') GROUP BY ALL
),
closed AS (
    SELECT
        segment_type, segment, period_of(closed_at) AS period_start,
        count(*) FILTER (WHERE is_won) AS deals_won,
        count(*) FILTER (WHERE NOT is_won) AS deals_lost,
        coalesce(sum(amount_base) FILTER (WHERE is_won), 0) AS revenue_won,
        count(amount_base) FILTER (WHERE is_won) AS won_with_amount,
        quantile_cont(date_diff('day', CAST(created_at AS DATE), CAST(closed_at AS DATE)), 0.5)
            FILTER (WHERE is_won) AS sales_cycle_days_median,
        avg(date_diff('day', CAST(created_at AS DATE), CAST(closed_at AS DATE)))
            FILTER (WHERE is_won) AS sales_cycle_days_mean
    FROM by_segment WHERE is_closed AND closed_at < getvariable('cutoff') GROUP BY ALL
)
SELECT
    s.segment_type,
    s.segment,
    p.period_start,
    CASE WHEN p.period_start >= getvariable('go_live') THEN 'post_go_live' ELSE 'baseline' END AS phase,
    coalesce(created.deals_created, 0) AS deals_created,
    coalesce(closed.deals_won, 0) AS deals_won,
    coalesce(closed.deals_lost, 0) AS deals_lost,
    closed.deals_won / nullif(closed.deals_won + closed.deals_lost, 0) AS win_rate,
    coalesce(closed.revenue_won, 0) AS revenue_won,
    closed.revenue_won / nullif(closed.won_with_amount, 0) AS avg_deal_size,
    closed.sales_cycle_days_median,
    closed.sales_cycle_days_mean,
    coalesce(closed.deals_won + closed.deals_lost, 0) < 10 AS low_volume
FROM segments AS s
CROSS JOIN periods AS p
LEFT JOIN created ON created.segment_type = s.segment_type AND created.segment IS NOT DISTINCT FROM s.segment
                 AND created.period_start = p.period_start
LEFT JOIN closed ON closed.segment_type = s.segment_type AND closed.segment IS NOT DISTINCT FROM s.segment
                AND closed.period_start = p.period_start
ORDER BY s.segment_type, s.segment NULLS LAST, p.period_start
