-- staging.deal_stage_history: when each deal entered each stage, one row per
-- (source, deal_id, stage, entered_at); exact repeats across exports collapse.
WITH parsed AS NOT MATERIALIZED (
    SELECT
        r._source AS source,
        nullif(trim(r.deal_id), '') AS deal_id,
        nullif(trim(r.stage), '') AS stage,
        r.entered_at,
        r.entered_at IS NULL AND r._text['entered_at'] IS NULL AS entered_at_missing,
        r.rowid AS _raw_rowid, r._batch_id
    FROM raw.deal_stage_history AS r
),
-- Exact repeats collapse: one row per (deal, stage, entered_at). Only the (deal, stage) pairs
-- landed more than once can hold repeats, so only they are ranked; a row whose entry time
-- did not parse is judged on its own.
latest AS (
    SELECT * FROM last_occurrence(
        'parsed', CASE WHEN deal_id IS NOT NULL AND stage IS NOT NULL THEN {'deal_id': deal_id, 'stage': stage} END,
        within := entered_at, alone := entered_at IS NULL)
),
-- When the deal left this stage: the next valid entry of the same deal (null: still in it).
-- Computed here, where the table is rebuilt only when the history changes, rather than in
-- kpi.stage_durations, which is rebuilt every night. The window carries only what the
-- columns below need.
exits AS (
    SELECT
        source, deal_id, stage, entered_at, entered_at_missing, _batch_id, _raw_rowid,
        lead(entered_at) OVER (
            PARTITION BY source, deal_id, deal_id IS NOT NULL AND stage IS NOT NULL AND entered_at IS NOT NULL
            ORDER BY entered_at, stage
        ) AS exited_at
    FROM latest
)
SELECT
    source, deal_id, stage, entered_at, exited_at,
    _batch_id AS batch_id,
    coalesce(deal_id, '') || ':' || coalesce(stage, '') AS _key,
    list_filter([
        CASE WHEN deal_id IS NULL THEN 'missing deal_id' END,
        CASE WHEN stage IS NULL THEN 'missing stage' END,
        CASE WHEN entered_at_missing THEN 'missing entered_at'
             WHEN entered_at IS NULL THEN 'unparseable entered_at' END
    ], lambda reason: reason IS NOT NULL) AS _reasons,
    _raw_rowid
FROM exits
