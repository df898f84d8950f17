-- staging.deals: one row per (source, deal_id), typed, in UTC, with the amount in
-- the base currency. The latest updated_at wins (a tie goes to the later row:
-- later file, then later line); the survivor is then checked against the row
-- rules and, if it fails, quarantined with every reason, so an older version
-- never comes back. A row with an unparseable updated_at cannot be ordered and
-- is judged on its own, as is one with an implausible updated_at (outside
-- 1900..2100, see implausible_ts in macros.sql: a "9999-12-31" must not win).
WITH scoped AS MATERIALIZED (
    SELECT *, rowid AS _raw_rowid FROM raw.deals WHERE in_scope(deal_id, _batch_id)
),
input AS NOT MATERIALIZED (
    SELECT *, rowid AS _raw_rowid FROM raw.deals WHERE NOT scoped_build() UNION ALL SELECT * FROM scoped
),
parsed AS NOT MATERIALIZED (
    SELECT
        r._source AS source,
        nullif(trim(r.deal_id), '') AS deal_id,
        r.deal_name, r.account_id, r.owner_id, r.pipeline, r.stage, r.segment,
        upper(trim(r.currency)) AS currency,
        r.is_closed, r.is_won,
        coalesce(r.is_deleted, false) AS is_deleted,
        r.amount, r.created_at,
        -- closed_at is read only for closed deals: open ones may carry an expected close date.
        CASE WHEN r.is_closed THEN r.closed_at END AS closed_at,
        r.updated_at AS updated_at_given,
        r.deal_id AS raw_deal_id, r.is_deleted AS given_is_deleted, r._text,
        r._raw_rowid, r._batch_id
    FROM input AS r
),
-- A deal's versions are ordered by updated_at (given, else the latest of its created and
-- closed times). A row whose updated_at did not parse, or is implausible, cannot be
-- ordered: it is judged on its own.
versioned AS NOT MATERIALIZED (
    SELECT
        *,
        coalesce(updated_at_given, greatest(created_at, closed_at)) AS updated_at,
        CAST(coalesce(closed_at, created_at) AS DATE) AS rate_date
    FROM parsed
),
latest AS (
    SELECT * FROM last_occurrence(
        'versioned', deal_id, version := updated_at,
        alone := unparsed(_text['updated_at'], updated_at_given) OR implausible_ts(updated_at_given))
),
priced AS (
    SELECT
        l.*,
        CASE WHEN l.currency = getvariable('base_currency') THEN 1.0 ELSE fx.rate_to_base END AS fx_rate
    FROM latest AS l
    LEFT JOIN fx_days('staging.fx_rates') AS fx ON fx.currency = l.currency AND fx.day = fx_day(l.rate_date)
)
SELECT
    source, deal_id, deal_name, account_id, owner_id, pipeline, stage,
    is_closed, is_won, is_deleted, amount, currency, fx_rate,
    amount * fx_rate AS amount_base,
    created_at, closed_at, updated_at,
    _batch_id AS batch_id,
    segment,
    coalesce(deal_id, raw_deal_id) AS _key,
    list_filter([
        CASE WHEN deal_id IS NULL THEN 'missing deal_id' END,
        CASE WHEN unparsed(_text['created_at'], created_at) THEN 'unparseable created_at'
             WHEN created_at IS NULL THEN 'missing created_at'
             WHEN implausible_ts(created_at) THEN 'implausible created_at' END,
        CASE WHEN unparsed(_text['is_closed'], is_closed) THEN 'unparseable is_closed'
             WHEN is_closed IS NULL THEN 'missing is_closed' END,
        CASE WHEN unparsed(_text['is_won'], is_won) THEN 'unparseable is_won'
             WHEN is_won IS NULL THEN 'missing is_won' END,
        CASE WHEN unparsed(_text['amount'], amount) THEN 'unparseable amount' END,
        CASE WHEN unparsed(_text['updated_at'], updated_at_given) THEN 'unparseable updated_at'
             WHEN implausible_ts(updated_at_given) THEN 'implausible updated_at' END,
        CASE WHEN unparsed(_text['is_deleted'], given_is_deleted) THEN 'unparseable is_deleted' END,
        CASE WHEN is_closed AND unparsed(_text['closed_at'], closed_at) THEN 'unparseable closed_at'
             WHEN is_closed AND closed_at IS NULL THEN 'is_closed without closed_at'
             WHEN implausible_ts(closed_at) THEN 'implausible closed_at' END,
        CASE WHEN is_won AND NOT is_closed THEN 'is_won while not is_closed' END,
        CASE WHEN CAST(closed_at AS DATE) < CAST(created_at AS DATE)
             THEN 'closed_at before created_at' END,
        CASE WHEN amount IS NOT NULL AND currency IS NULL THEN 'missing currency'
             WHEN amount IS NOT NULL AND fx_rate IS NULL AND rate_date IS NOT NULL
             THEN 'no fx rate for ' || currency || ' on or before ' || rate_date END
    ], lambda reason: reason IS NOT NULL) AS _reasons,
    _raw_rowid
FROM priced
