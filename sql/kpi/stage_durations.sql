-- kpi.stage_durations: how long deals sit in each stage, per period in which
-- they left it (time in stage = the next stage's entered_at - this one's).
-- Deleted deals count nowhere; the current stage of an open deal has no exit yet.
WITH stays AS (
    -- exited_at (the deal's next stage entry) comes with staging.deal_stage_history.
    SELECT h.stage, h.entered_at, h.exited_at
    FROM staging.deal_stage_history AS h
    JOIN staging.deals AS d USING (source, deal_id)
    WHERE NOT d.is_deleted
)
SELECT
    period_of(exited_at) AS period_start,
    stage,
    count(*) AS stage_exits,
    quantile_cont(date_diff('second', entered_at, exited_at) / 86400.0, 0.5) AS days_in_stage_median,
    avg(date_diff('second', entered_at, exited_at) / 86400.0) AS days_in_stage_mean
FROM stays
WHERE exited_at IS NOT NULL
  AND exited_at < getvariable('cutoff')
  AND exited_at >= (SELECT min(period_start) FROM kpi.periodic)
GROUP BY ALL
ORDER BY period_start, stage
