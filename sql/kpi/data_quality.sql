-- kpi.data_quality: how many rows of each staging table were valid (reason null) or quarantined
-- (by reason) per period of the row's own date, a driver of ROI the method names beside adoption.
-- A quarantined row's period comes from its date as landed; null when that does not parse.
WITH dated AS (
    SELECT 'deals' AS table_name, created_at AS moment FROM staging.deals
    UNION ALL SELECT 'deal_stage_history', entered_at FROM staging.deal_stage_history
    UNION ALL SELECT 'customers', started_at FROM staging.customers
    UNION ALL SELECT 'finance_gl', posted_on FROM staging.finance_gl
    UNION ALL SELECT 'csat', responded_at FROM staging.csat
    UNION ALL SELECT 'fx_rates', date FROM staging.fx_rates
    UNION ALL SELECT 'crm_usage', period_start FROM staging.crm_usage
),
valid AS (
    SELECT table_name, period_of(moment) AS period_start, CAST(NULL AS VARCHAR) AS reason, count(*) AS rows
    FROM dated GROUP BY ALL
),
-- Each table's own date column, as the row landed.
date_columns(table_name, date_column) AS (
    VALUES ('deals', 'created_at'), ('deal_stage_history', 'entered_at'), ('customers', 'started_at'),
           ('finance_gl', 'posted_on'), ('csat', 'responded_at'), ('fx_rates', 'date'),
           ('crm_usage', 'period_start')
),
quarantined AS (
    SELECT q.table_name, parse_ts(json_extract_string(q.payload, c.date_column)) AS moment, q.reason
    FROM quarantine.rejected_rows AS q
    LEFT JOIN date_columns AS c USING (table_name)
),
rejected AS (
    SELECT table_name,
           CASE WHEN NOT implausible_ts(moment) THEN period_of(moment) END AS period_start,
           reason, count(*) AS rows
    FROM quarantined GROUP BY ALL
)
SELECT period_start, table_name, reason, rows FROM valid
UNION ALL
SELECT period_start, table_name, reason, rows FROM rejected
ORDER BY table_name, period_start NULLS LAST, reason NULLS FIRST
