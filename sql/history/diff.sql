-- What changed in already complete periods of kpi.periodic between the last two published runs:
-- a restated month (a deal reopened, its amount corrected, a cost re-booked). One row per cell
-- that differs (floats beyond rounding), in long format.
WITH runs AS (
    SELECT run_id, max(run_at) AS run_at FROM history.kpi_periodic GROUP BY run_id ORDER BY run_at DESC LIMIT 2
),
latest AS (SELECT run_id FROM runs ORDER BY run_at DESC LIMIT 1),
previous AS (SELECT run_id FROM runs ORDER BY run_at DESC LIMIT 1 OFFSET 1),
cells AS (
    SELECT * FROM (
        SELECT run_id, period_start,
               COLUMNS(lambda c: c NOT IN ('run_id', 'run_at', 'as_of', 'period_start', 'period_end', 'phase',
                                      'is_complete'))::DOUBLE
        FROM history.kpi_periodic WHERE run_id IN (SELECT run_id FROM runs)
    ) UNPIVOT INCLUDE NULLS (value FOR kpi IN (COLUMNS(* EXCLUDE (run_id, period_start))))
)
SELECT 'kpi.periodic' AS "table", b.period_start, b.kpi AS "column", b.value AS before, a.value AS after
FROM cells AS b
JOIN cells AS a USING (period_start, kpi)
WHERE b.run_id = (SELECT run_id FROM previous)
  AND a.run_id = (SELECT run_id FROM latest)
  AND a.value IS DISTINCT FROM b.value
  AND NOT coalesce(abs(a.value - b.value) <= 1e-9 * greatest(1, abs(b.value)), false)
ORDER BY b.period_start, "column"
