-- staging.crm_usage: one row per period_start, whichever source brought it (the last
-- occurrence wins); adoption is active_users / licensed_seats.
WITH parsed AS NOT MATERIALIZED (
    SELECT
        r._source AS source,
        r.period_start, r.active_users, r.licensed_seats,
        r._text, r.rowid AS _raw_rowid, r._batch_id
    FROM raw.crm_usage AS r
)
SELECT
    source, period_start, active_users, licensed_seats, _batch_id AS batch_id,
    coalesce(CAST(period_start AS VARCHAR), _text['period_start']) AS _key,
    list_filter([
        CASE WHEN unparsed(_text['period_start'], period_start) THEN 'unparseable period_start'
             WHEN period_start IS NULL THEN 'missing period_start' END,
        CASE WHEN unparsed(_text['active_users'], active_users) THEN 'unparseable active_users'
             WHEN active_users IS NULL THEN 'missing active_users'
             WHEN active_users < 0 THEN 'negative active_users' END,
        CASE WHEN unparsed(_text['licensed_seats'], licensed_seats) THEN 'unparseable licensed_seats'
             WHEN licensed_seats IS NULL THEN 'missing licensed_seats'
             WHEN licensed_seats < 0 THEN 'negative licensed_seats' END
    ], lambda reason: reason IS NOT NULL) AS _reasons,
    _raw_rowid
FROM last_occurrence('parsed', period_start, per_source := false)
