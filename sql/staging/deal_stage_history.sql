-- staging.deal_stage_history: when each deal entered each stage, one row per
-- (source, deal_id, stage, entered_at); exact repeats across exports collapse.
WITH parsed AS (
    SELECT
        r._source AS source,
        nullif(trim(r.deal_id), '') AS deal_id,
        nullif(trim(r.stage), '') AS stage,
        parse_ts(r.entered_at) AS entered_at,
        r.entered_at AS raw_entered_at,
        r.rowid AS _raw_rowid, r._file, r._row_number, r._batch_id,
        row_number() OVER (
            PARTITION BY r._source,
                CASE WHEN r.deal_id IS NULL OR r.stage IS NULL OR parse_ts(r.entered_at) IS NULL
                     THEN 'row:' || r._batch_id || ':' || r._row_number
                     ELSE r.deal_id || ':' || r.stage || ':' || parse_ts(r.entered_at) END
            ORDER BY r._batch_id DESC, r._row_number DESC
        ) AS version_rank
    FROM raw.deal_stage_history AS r
)
SELECT
    source, deal_id, stage, entered_at,
    -- When the deal left this stage: the next valid entry of the same deal (null: still in it).
    -- Computed here, where the table is rebuilt only when the history changes, rather than in
    -- kpi.stage_durations, which is rebuilt every night.
    lead(entered_at) OVER (
        PARTITION BY source, deal_id, deal_id IS NOT NULL AND stage IS NOT NULL AND entered_at IS NOT NULL
        ORDER BY entered_at, stage
    ) AS exited_at,
    _batch_id AS batch_id,
    coalesce(deal_id, '') || ':' || coalesce(stage, '') AS _key,
    list_filter([
        CASE WHEN deal_id IS NULL THEN 'missing deal_id' END,
        CASE WHEN stage IS NULL THEN 'missing stage' END,
        CASE WHEN raw_entered_at IS NULL THEN 'missing entered_at'
             WHEN entered_at IS NULL THEN 'unparseable entered_at' END
    ], lambda reason: reason IS NOT NULL) AS _reasons,
    _raw_rowid, _file, _row_number
FROM parsed
WHERE version_rank = 1
