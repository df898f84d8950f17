-- roi.assumptions: every setting that moves the ROI figures, as this run used it, so the
-- analysts' copy (and the report and the finance export made from it) says how its numbers
-- were made. One row per setting; GL accounts as finance.accounts.<account> -> category.
WITH settings (position, assumption, value) AS (
    VALUES
        (1, 'as_of', CAST(getvariable('as_of') AS VARCHAR)),
        (2, 'go_live', CAST(getvariable('go_live') AS VARCHAR)),
        (3, 'baseline_months', CAST(getvariable('baseline_months') AS VARCHAR)),
        (4, 'period', CAST(getvariable('period') AS VARCHAR)),
        (5, 'base_currency', CAST(getvariable('base_currency') AS VARCHAR)),
        (6, 'gross_margin', CAST(getvariable('gross_margin') AS VARCHAR)),
        (7, 'attribution_share', CAST(getvariable('attribution_share') AS VARCHAR)),
        (8, 'risk_adjustment', CAST(getvariable('risk_adjustment') AS VARCHAR)),
        (9, 'discount_rate', CAST(getvariable('discount_rate') AS VARCHAR)),
        (10, 'arpa_monthly', CAST(getvariable('arpa_monthly') AS VARCHAR))
),
accounts AS (
    SELECT unnest(map_entries(getvariable('accounts'))) AS entry
)
SELECT assumption, value
FROM (
    SELECT position, assumption, value FROM settings
    UNION ALL
    SELECT 100, 'finance.accounts.' || entry.key, entry.value FROM accounts
)
ORDER BY position, assumption
