-- staging.fx_rates: one rate per (date, currency), whichever source brought it; the last
-- occurrence wins. rate_to_base converts one unit of `currency` into the base currency.
WITH parsed AS NOT MATERIALIZED (
    SELECT
        r._source AS source,
        r.date,
        upper(trim(r.currency)) AS currency,
        r.rate_to_base,
        r._text, r.rowid AS _raw_rowid, r._batch_id
    FROM raw.fx_rates AS r
)
SELECT
    source, date, currency, rate_to_base, _batch_id AS batch_id,
    coalesce(CAST(date AS VARCHAR), _text['date']) || ':' || coalesce(currency, '') AS _key,
    list_filter([
        CASE WHEN unparsed(_text['date'], date) THEN 'unparseable date' WHEN date IS NULL THEN 'missing date' END,
        CASE WHEN currency IS NULL THEN 'missing currency' END,
        CASE WHEN unparsed(_text['rate_to_base'], rate_to_base) THEN 'unparseable rate_to_base'
             WHEN rate_to_base IS NULL THEN 'missing rate_to_base'
             WHEN rate_to_base <= 0 THEN 'rate_to_base not positive' END
    ], lambda reason: reason IS NOT NULL) AS _reasons,
    _raw_rowid
FROM last_occurrence(
    'parsed', CASE WHEN date IS NOT NULL AND currency IS NOT NULL THEN {'date': date, 'currency': currency} END,
    per_source := false)
