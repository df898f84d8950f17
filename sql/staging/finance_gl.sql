-- staging.finance_gl: one row per entry_id (last occurrence wins), in the base
-- currency at the most recent rate on or before posted_on, with the cost
-- category from the configured account map (null: the line counts nowhere).
WITH scoped AS MATERIALIZED (
    SELECT *, rowid AS _raw_rowid FROM raw.finance_gl WHERE in_scope(entry_id, _batch_id)
),
input AS NOT MATERIALIZED (
    SELECT *, rowid AS _raw_rowid FROM raw.finance_gl WHERE NOT scoped_build() UNION ALL SELECT * FROM scoped
),
parsed AS NOT MATERIALIZED (
    SELECT
        r._source AS source,
        nullif(trim(r.entry_id), '') AS entry_id,
        r.posted_on,
        nullif(trim(r.account), '') AS account,
        r.description, r.vendor, r.amount,
        upper(trim(r.currency)) AS currency,
        r._text, r._raw_rowid, r._batch_id
    FROM input AS r
),
priced AS (
    SELECT
        p.*,
        getvariable('accounts')[p.account] AS category,
        CASE WHEN p.currency = getvariable('base_currency') THEN 1.0 ELSE fx.rate_to_base END AS fx_rate
    FROM last_occurrence('parsed', entry_id) AS p
    LEFT JOIN fx_days('staging.fx_rates') AS fx ON fx.currency = p.currency AND fx.day = fx_day(p.posted_on)
)
SELECT
    source, entry_id, posted_on, account, category, description, vendor,
    amount, currency, fx_rate, amount * fx_rate AS amount_base, _batch_id AS batch_id,
    entry_id AS _key,
    list_filter([
        CASE WHEN entry_id IS NULL THEN 'missing entry_id' END,
        CASE WHEN unparsed(_text['posted_on'], posted_on) THEN 'unparseable posted_on'
             WHEN posted_on IS NULL THEN 'missing posted_on'
             WHEN implausible_ts(posted_on) THEN 'implausible posted_on' END,
        CASE WHEN account IS NULL THEN 'missing account' END,
        CASE WHEN unparsed(_text['amount'], amount) THEN 'unparseable amount'
             WHEN amount IS NULL THEN 'missing amount' END,
        CASE WHEN currency IS NULL THEN 'missing currency'
             WHEN fx_rate IS NULL AND posted_on IS NOT NULL
             THEN 'no fx rate for ' || currency || ' on or before ' || posted_on END
    ], lambda reason: reason IS NOT NULL) AS _reasons,
    _raw_rowid
FROM priced
