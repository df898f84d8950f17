-- kpi.vs_baseline: every KPI of every period beside its baseline, long format,
-- so a dashboard can chart any KPI's change without knowing the column names.
-- delta_pct is a fraction, null when the baseline is 0 or null.
WITH periodic AS (
    SELECT period_start, COLUMNS(* EXCLUDE (period_start, period_end, phase, is_complete))::DOUBLE
    FROM kpi.periodic
),
baseline AS (
    SELECT COLUMNS(* EXCLUDE (window_start, window_end, periods))::DOUBLE FROM kpi.baseline
),
period_values AS (
    SELECT * FROM periodic
    UNPIVOT INCLUDE NULLS (value FOR kpi IN (COLUMNS(* EXCLUDE (period_start))))
),
baseline_values AS (
    SELECT * FROM baseline UNPIVOT INCLUDE NULLS (baseline FOR kpi IN (COLUMNS(*)))
)
SELECT
    v.period_start,
    v.kpi,
    v.value,
    b.baseline,
    v.value - b.baseline AS delta,
    (v.value - b.baseline) / nullif(b.baseline, 0) AS delta_pct
FROM period_values AS v
JOIN baseline_values AS b USING (kpi)
ORDER BY v.period_start, v.kpi
