-- staging.customers: one row per (source, customer_id) that is or was a customer; the last
-- occurrence wins (exports carry no updated_at for customers).
-- A record is a customer when its CRM flags it one (is_customer; null, as in a customers.csv,
-- means yes), when it carries a started_at, or when a won deal of the same source is with it
-- (account_id = customer_id). The won deals are read here, from staging.deals, and not by the
-- connector: winning a deal does not change its account, so an account sync would never see it.
-- Other records (prospects, partners, competitors) are neither staged nor quarantined.
-- started_at: the record's own, else its first won deal's close, else its creation (only a
-- flagged customer gets that far).
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
        r.started_at AS given_started_at,
        r.started_at IS NOT NULL OR r._text['started_at'] IS NOT NULL AS has_started_at,
        r.churned_at, r.mrr,
        -- Deleted or merged-away accounts (live CRM sources) count nowhere.
        coalesce(r.is_deleted, false) AS is_deleted,
        -- An unparseable flag keeps the row, to be quarantined with its reason.
        coalesce(r.is_customer, true) AS flagged,
        r.created_at,
        r.is_deleted AS given_is_deleted, r.is_customer AS given_is_customer,
        r._text, r._raw_rowid, r._batch_id
    FROM input AS r
),
won AS (
    SELECT source, nullif(trim(account_id), '') AS customer_id, min(closed_at) AS first_won_at
    FROM staging.deals
    WHERE is_won AND NOT is_deleted AND nullif(trim(account_id), '') IS NOT NULL
    GROUP BY ALL
),
judged AS (
    SELECT
        l.*,
        CASE WHEN l.has_started_at THEN l.given_started_at
             ELSE coalesce(w.first_won_at, l.created_at) END AS started_at
    FROM last_occurrence('parsed', customer_id) AS l
    LEFT JOIN won AS w ON w.source = l.source AND w.customer_id = l.customer_id
    WHERE l.flagged OR l.has_started_at OR w.first_won_at IS NOT NULL
)
SELECT
    source, customer_id, name, started_at, churned_at, mrr, is_deleted, _batch_id AS batch_id,
    customer_id AS _key,
    list_filter([
        CASE WHEN customer_id IS NULL THEN 'missing customer_id' END,
        CASE WHEN NOT has_started_at AND started_at IS NULL THEN 'missing started_at'
             WHEN started_at IS NULL THEN 'unparseable started_at'
             WHEN implausible_ts(started_at) THEN 'implausible started_at' END,
        CASE WHEN unparsed(_text['churned_at'], churned_at) THEN 'unparseable churned_at'
             WHEN implausible_ts(churned_at) THEN 'implausible churned_at' END,
        CASE WHEN churned_at < started_at THEN 'churned_at before started_at' END,
        CASE WHEN unparsed(_text['mrr'], mrr) THEN 'unparseable mrr' END,
        CASE WHEN unparsed(_text['is_deleted'], given_is_deleted) THEN 'unparseable is_deleted' END,
        CASE WHEN unparsed(_text['is_customer'], given_is_customer) THEN 'unparseable is_customer' END,
        CASE WHEN unparsed(_text['created_at'], created_at) THEN 'unparseable created_at'
             WHEN implausible_ts(created_at) THEN 'implausible created_at' END
    ], lambda reason: reason IS NOT NULL) AS _reasons,
    _raw_rowid
FROM judged
