-- roi.tei: the Forrester Total Economic Impact view, one row per year 0..horizon_years. Year 0
-- holds everything before go-live; year y is [go_live + y-1 years, go_live + y years). A year not
-- fully observed adds, for its unobserved months, the monthly run-rate of the trailing 12 months
-- of complete post-go-live periods (pro rata when fewer). Costs carry the cost risk uplift; year y
-- is discounted by (1 + discount_rate)^y, year 0 not at all.
WITH years AS (
    SELECT
        y AS year,
        CASE WHEN y = 0 THEN least(getvariable('go_live'), (SELECT min(period_start) FROM roi.rolling))
             ELSE CAST(getvariable('go_live') + to_years(CAST(y - 1 AS INTEGER)) AS DATE) END AS year_start,
        CAST(getvariable('go_live') + to_years(CAST(y AS INTEGER)) AS DATE) AS year_end
    FROM range(0, getvariable('tei_horizon_years') + 1) AS t(y)
),
observed AS (
    SELECT
        y.year, y.year_start, y.year_end,
        coalesce(sum(r.benefit_total), 0) AS benefits,
        coalesce(sum(r.cost_total), 0) AS costs,
        -- Months not yet observed (a year of weeks may hold 53 period starts).
        greatest(0, periods_per_year() - count(r.period_start)) * getvariable('months_per_period') AS unobserved_months
    FROM years AS y
    LEFT JOIN roi.rolling AS r ON r.period_start >= y.year_start AND r.period_start < y.year_end
    GROUP BY ALL
),
run_rate AS (
    SELECT
        sum(benefit_total) / nullif(count(*) * getvariable('months_per_period'), 0) AS benefits_per_month,
        sum(cost_total) / nullif(count(*) * getvariable('months_per_period'), 0) AS costs_per_month
    FROM (
        SELECT * FROM roi.rolling
        WHERE period_start >= getvariable('go_live')
        QUALIFY row_number() OVER (ORDER BY period_start DESC) <= periods_per_year()
    )
),
projected AS (
    SELECT
        o.year, o.year_start, o.year_end,
        o.year > 0 AND o.unobserved_months > 0 AS is_projected,
        o.benefits + CASE WHEN is_projected THEN rr.benefits_per_month * o.unobserved_months ELSE 0 END
            AS benefits,
        (o.costs + CASE WHEN is_projected THEN rr.costs_per_month * o.unobserved_months ELSE 0 END)
            * (1 + getvariable('tei_cost_risk_adjustment')) AS costs
    FROM observed AS o, run_rate AS rr
),
discounted AS (
    SELECT
        *,
        benefits / pow(1 + getvariable('discount_rate'), year) AS pv_benefits,
        costs / pow(1 + getvariable('discount_rate'), year) AS pv_costs
    FROM projected
)
SELECT
    year,
    year_start,
    year_end,
    is_projected,
    benefits,
    costs,
    pv_benefits,
    pv_costs,
    -- null from the first year that cannot be valued (nothing observed after go-live to project from)
    CASE WHEN count(pv_benefits - pv_costs) OVER w = count(*) OVER w THEN sum(pv_benefits - pv_costs) OVER w END
        AS cumulative_npv
FROM discounted
WINDOW w AS (ORDER BY year)
ORDER BY year
