-- staging.stage_map: every stage value per source and pipeline, how the deals now in it are
-- classified (won / lost / open, or mixed when the CRM's flags disagree within a stage), how
-- many there are, and whether its name reads like a closed stage. A stage missing from
-- won_stages (a typo, a stage renamed in the CRM) shows here as an open stage named like a
-- closed one, instead of silently turning won deals into open ones.
SELECT
    source,
    pipeline,
    stage,
    CASE WHEN bool_and(is_closed AND is_won) THEN 'won'
         WHEN bool_and(is_closed AND NOT is_won) THEN 'lost'
         WHEN bool_and(NOT is_closed) THEN 'open'
         ELSE 'mixed' END AS classification,
    count(*) AS deals,
    regexp_matches(lower(coalesce(stage, '')), getvariable('closed_stage_pattern')) AS looks_closed
FROM staging.deals
WHERE NOT is_deleted
GROUP BY ALL
ORDER BY ALL
