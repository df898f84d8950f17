-- staging.csat: one row per (source, response_id); the last occurrence wins.
WITH scoped AS MATERIALIZED (
    SELECT *, rowid AS _raw_rowid FROM raw.csat WHERE in_scope(response_id, _batch_id)
),
input AS NOT MATERIALIZED (
    SELECT *, rowid AS _raw_rowid FROM raw.csat WHERE NOT scoped_build() UNION ALL SELECT * FROM scoped
),
parsed AS NOT MATERIALIZED (
    SELECT
        r._source AS source,
        nullif(trim(r.response_id), '') AS response_id,
        r.customer_id,
        r.responded_at, r.score,
        r._text, r._raw_rowid, r._batch_id
    FROM input AS r
)
SELECT
    source, response_id, customer_id, responded_at, score, _batch_id AS batch_id,
    response_id AS _key,
    list_filter([
        CASE WHEN response_id IS NULL THEN 'missing response_id' END,
        CASE WHEN unparsed(_text['responded_at'], responded_at) THEN 'unparseable responded_at'
             WHEN responded_at IS NULL THEN 'missing responded_at' END,
        CASE WHEN unparsed(_text['score'], score) THEN 'unparseable score'
             WHEN score IS NULL THEN 'missing score' END
    ], lambda reason: reason IS NOT NULL) AS _reasons,
    _raw_rowid
FROM last_occurrence('parsed', response_id)
