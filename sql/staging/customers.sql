-- staging.customers: one row per (source, customer_id); the last occurrence wins
-- (exports carry no updated_at for customers).
WITH scoped AS MATERIALIZED (
    SELECT *, rowid AS _raw_rowid FROM raw.customers WHERE in_scope(customer_id, _batch_id)
),
input AS NOT MATERIALIZED (
    SELECT *, rowid AS _raw_rowid FROM raw.customers WHERE NOT scoped_build() UNION ALL SELECT * FROM scoped
),
parsed AS NOT MATERIALIZED (
    SELECT
        r._source AS source,
        nullif(trim(r.customer_id), '') AS customer_id,
        r.name,
        parse_ts(r.started_at) AS started_at,
        parse_ts(r.churned_at) AS churned_at,
        parse_number(r.mrr) AS mrr,
        -- Deleted or merged-away accounts (live CRM sources) count nowhere.
        coalesce(parse_bool(r.is_deleted), false) AS is_deleted,
        r.is_deleted AS raw_is_deleted,
        r.started_at AS raw_started_at, r.churned_at AS raw_churned_at, r.mrr AS raw_mrr,
        r._raw_rowid, r._row_number, r._batch_id
    FROM input AS r
)
SELECT
    source, customer_id, name, started_at, churned_at, mrr, is_deleted, _batch_id AS batch_id,
    customer_id AS _key,
    list_filter([
        CASE WHEN customer_id IS NULL THEN 'missing customer_id' END,
        CASE WHEN raw_started_at IS NULL THEN 'missing started_at'
             WHEN started_at IS NULL THEN 'unparseable started_at'
             WHEN implausible_ts(started_at) THEN 'implausible started_at' END,
        CASE WHEN unparsed(raw_churned_at, churned_at) THEN 'unparseable churned_at'
             WHEN implausible_ts(churned_at) THEN 'implausible churned_at' END,
        CASE WHEN churned_at < started_at THEN 'churned_at before started_at' END,
        CASE WHEN unparsed(raw_mrr, mrr) THEN 'unparseable mrr' END,
        CASE WHEN unparsed(raw_is_deleted, parse_bool(raw_is_deleted)) THEN 'unparseable is_deleted' END
    ], lambda reason: reason IS NOT NULL) AS _reasons,
    _raw_rowid
FROM last_occurrence('parsed', customer_id)
