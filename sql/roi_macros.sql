-- Macros of the ROI models: the counterfactual methods, the bootstrap's weights, and ROI under
-- other assumptions. One definition of each serves the data (roi.counterfactual), every bootstrap
-- draw (roi.bootstrap) and every alternative (roi.sensitivity). Tables are passed by name, so a
-- macro binds when used, not when defined.

-- A configured method the data cannot support: the run stops with `message`, which names the key
-- (pipelines/transform.py reports it as one line).
CREATE OR REPLACE TEMP MACRO unsupported_by_data(message) AS error('unsupported by the data: ' || message);

CREATE OR REPLACE TEMP MACRO periods_per_year() AS
    CASE getvariable('period') WHEN 'month' THEN 12 WHEN 'quarter' THEN 4 ELSE 52 END;
-- Whole periods from the period starting on `a` to the one starting on `b` (negative when b < a).
CREATE OR REPLACE TEMP MACRO periods_between(a, b) AS
    CASE getvariable('period') WHEN 'month' THEN date_diff('month', a, b)
                               WHEN 'quarter' THEN date_diff('quarter', a, b)
                               ELSE date_diff('day', a, b) // 7 END;
-- A period's season: its month or quarter of the year (weeks have none).
CREATE OR REPLACE TEMP MACRO season_of(d) AS
    CASE getvariable('period') WHEN 'month' THEN month(d) WHEN 'quarter' THEN quarter(d) ELSE 0 END;

-- A deal is in the control group when its counterfactual.control column holds one of the values.
CREATE OR REPLACE TEMP MACRO in_control_group(segment, pipeline, owner_id) AS
    coalesce(list_contains(getvariable('control_values'),
                           CASE getvariable('control_column') WHEN 'segment' THEN segment
                                                              WHEN 'pipeline' THEN pipeline
                                                              WHEN 'owner_id' THEN owner_id END), false);

-- A Poisson(1) weight for a deal in a bootstrap draw: the inverse CDF at a uniform 64-bit number hashed
-- from (deal, draw, seed), so the same seed gives the same weights on every run, in any order, on any
-- number of threads and on DuckDB and Spark alike (docs/portability.md). The thresholds are
-- floor(P(X <= k) x 2^64); the 6e-11 of mass above 12 is given 13.
CREATE OR REPLACE TEMP MACRO poisson_from_hash(h) AS
    CASE WHEN h < 6786177901268885274::UBIGINT THEN 0
         WHEN h < 13572355802537770549::UBIGINT THEN 1
         WHEN h < 16965444753172213186::UBIGINT THEN 2
         WHEN h < 18096474403383694065::UBIGINT THEN 3
         WHEN h < 18379231815936564285::UBIGINT THEN 4
         WHEN h < 18435783298447138329::UBIGINT THEN 5
         WHEN h < 18445208545532234003::UBIGINT THEN 6
         WHEN h < 18446555009401533385::UBIGINT THEN 7
         WHEN h < 18446723317385195808::UBIGINT THEN 8
         WHEN h < 18446742018272269410::UBIGINT THEN 9
         WHEN h < 18446743888360976771::UBIGINT THEN 10
         WHEN h < 18446744058369041076::UBIGINT THEN 11
         WHEN h < 18446744072536379768::UBIGINT THEN 12
         ELSE 13 END;
-- The hash is plain BIGINT arithmetic that both engines compute bit for bit and never overflow:
-- 32-bit words (0 <= x < 2^32), xor-shifts, and products modulo 2^32 by odd constants c in
-- [2^31, 2^32), written x * (c - 2^32) so that the product fits 64 bits; & keeps its low 32 bits.
CREATE OR REPLACE TEMP MACRO mul32(x, c) AS (x * (c - 4294967296)) & 4294967295;
-- A word mixed with MurmurHash3's multipliers around a xor-shift: every bit of x moves the top bits,
-- which decide the weight.
CREATE OR REPLACE TEMP MACRO mix32(x) AS
    mul32(xor(mul32(x, 2246822507), mul32(x, 2246822507) >> 16), 3266489909);
-- The draw as a word: xor the mixed seed, times a Weyl constant (2^32 / golden ratio, or another).
CREATE OR REPLACE TEMP MACRO draw_word(draw, c) AS
    mul32(xor(draw, mix32(getvariable('uncertainty_seed'))), c);
-- h: a high word from the key's low 32 bits and the draw, a low word from its other 28 bits and the draw.
-- The key's and the draw's words are arguments, so roi.bootstrap computes them once per deal and per draw.
CREATE OR REPLACE TEMP MACRO weight_of_words(key_high, draw_high, key_low, draw_low) AS
    poisson_from_hash(CAST(mix32(xor(key_high, draw_high)) AS UBIGINT) * 4294967296
                      + CAST(mix32(xor(key_low, draw_low)) AS UBIGINT));
CREATE OR REPLACE TEMP MACRO key_high(deal_key) AS deal_key & 4294967295;
CREATE OR REPLACE TEMP MACRO key_low(deal_key) AS deal_key >> 32;
CREATE OR REPLACE TEMP MACRO draw_high(draw) AS draw_word(draw, 2654435769);
CREATE OR REPLACE TEMP MACRO draw_low(draw) AS draw_word(draw, 2246822519);
CREATE OR REPLACE TEMP MACRO poisson_weight(deal_key, draw) AS
    weight_of_words(key_high(deal_key), draw_high(draw), key_low(deal_key), draw_low(draw));
-- A deal's identity for its weights: its id and creation time, not the source's name, so the same records
-- draw the same weights whether they came from an export file or an API; the first 60 bits of their MD5.
CREATE OR REPLACE TEMP MACRO key_md5(deal_id, created_at) AS
    md5(deal_id || '|' || strftime(created_at, '%Y-%m-%d %H:%M:%S.%f'));
-- BIGINT throughout: Spark's strpos is a 32-bit INT, and 20 bits x 2^20 overflows one.
CREATE OR REPLACE TEMP MACRO hex_digit(hex, i) AS CAST(strpos('0123456789abcdef', substr(hex, i, 1)) - 1 AS BIGINT);
CREATE OR REPLACE TEMP MACRO hex_20_bits(hex, i) AS
    hex_digit(hex, i) * 65536 + hex_digit(hex, i + 1) * 4096 + hex_digit(hex, i + 2) * 256
    + hex_digit(hex, i + 3) * 16 + hex_digit(hex, i + 4);
CREATE OR REPLACE TEMP MACRO bootstrap_key(deal_id, created_at) AS
    hex_20_bits(key_md5(deal_id, created_at), 1) * 1099511627776
    + hex_20_bits(key_md5(deal_id, created_at), 6) * 1048576
    + hex_20_bits(key_md5(deal_id, created_at), 11);

-- Expected revenue E(P) under each row's method. `inputs` names a table with one row per
-- (draw, method, period): in_baseline, revenue_won (the method's: the treated group's under
-- control), control_revenue_won, active_owners, control_active_owners. With normalise_by
-- active_owners a method models revenue per active owner and E is scaled by the period's owners.
-- t counts periods from the first baseline period (t = 0). It returns the inputs' columns and expected_revenue.
--   flat:     the baseline mean.
--   seasonal: the same season in the last baseline year, x growth ^ whole years since, growth =
--             last baseline year / the year before (1 with under 24 baseline months).
--   trend:    exp of the least-squares fit of ln revenue = a + b t (+ s_season with month or quarter
--             periods and 24 baseline months); with seasons, b is the pooled within-season slope and
--             a + s_season each season's mean of ln revenue less b x its mean t (the same fit).
--   control:  treated baseline mean x control revenue / control baseline mean.
CREATE OR REPLACE TEMP MACRO expected_revenue(inputs) AS TABLE
    WITH levels AS (
        SELECT
            *,
            coalesce(getvariable('normalise_by') = 'active_owners', false) AS per_owner,
            count(*) FILTER (WHERE in_baseline) OVER (PARTITION BY draw, method) AS baseline_periods
        FROM query_table(inputs)
    ),
    numbered AS (
        SELECT
            *,
            CASE WHEN per_owner THEN coalesce(revenue_won / nullif(active_owners, 0), 0)
                 ELSE revenue_won END AS y,
            CASE WHEN per_owner THEN coalesce(control_revenue_won / nullif(control_active_owners, 0), 0)
                 ELSE control_revenue_won END AS yc,
            CASE WHEN per_owner THEN active_owners ELSE 1 END AS scale,
            periods_between(min(period_start) FILTER (WHERE in_baseline) OVER (PARTITION BY draw, method),
                            period_start) AS t,
            season_of(period_start) AS season,
            -- trend's seasonal terms: with month or quarter periods and two baseline years
            CASE WHEN baseline_periods >= 2 * periods_per_year() AND getvariable('period') <> 'week'
                 THEN season_of(period_start) ELSE 0 END AS trend_season
        FROM levels
    ),
    fits AS (
        SELECT
            draw, method,
            avg(y) FILTER (WHERE in_baseline) AS y_mean,
            avg(yc) FILTER (WHERE in_baseline) AS yc_mean,
            CASE WHEN any_value(baseline_periods) >= 2 * periods_per_year()
                 THEN sum(y) FILTER (WHERE in_baseline AND t >= baseline_periods - periods_per_year())
                      / nullif(sum(y) FILTER (WHERE in_baseline AND t < baseline_periods - periods_per_year()
                                                AND t >= baseline_periods - 2 * periods_per_year()), 0)
                 ELSE 1 END AS growth
        FROM numbered
        GROUP BY draw, method
    ),
    last_year AS (
        SELECT draw, method, season, t, y
        FROM numbered
        WHERE method = 'seasonal' AND in_baseline AND t >= baseline_periods - periods_per_year()
    ),
    trend_seasons AS (
        SELECT draw, method, trend_season,
               regr_sxy(ln_y, t) AS sxy, regr_sxx(ln_y, t) AS sxx,
               regr_avgx(ln_y, t) AS t_mean, regr_avgy(ln_y, t) AS ln_mean
        FROM (SELECT *, ln(CASE WHEN y > 0 THEN y END) AS ln_y FROM numbered
              WHERE method = 'trend' AND in_baseline)
        GROUP BY draw, method, trend_season
    ),
    trend_slopes AS (
        SELECT draw, method, sum(sxy) / nullif(sum(sxx), 0) AS slope FROM trend_seasons GROUP BY draw, method
    )
    SELECT
        n.draw, n.method, n.period_start, n.in_baseline, n.revenue_won, n.control_revenue_won, n.active_owners,
        n.control_active_owners,
        n.scale * CASE n.method
            WHEN 'flat' THEN f.y_mean
            WHEN 'seasonal' THEN s.y * pow(f.growth, (n.t - s.t) // periods_per_year())
            WHEN 'trend' THEN exp(ts.ln_mean + tr.slope * (n.t - ts.t_mean))
            WHEN 'control' THEN f.y_mean * n.yc / nullif(f.yc_mean, 0)
        END AS expected_revenue
    FROM numbered AS n
    JOIN fits AS f ON f.draw = n.draw AND f.method = n.method
    LEFT JOIN last_year AS s ON s.draw = n.draw AND s.method = n.method AND s.season = n.season
    LEFT JOIN trend_seasons AS ts
           ON ts.draw = n.draw AND ts.method = n.method AND ts.trend_season = n.trend_season
    LEFT JOIN trend_slopes AS tr ON tr.draw = n.draw AND tr.method = n.method;

-- Net ROI at as_of for another incremental revenue (another method, a bootstrap draw) and other
-- margin, share and risk haircut, from roi.rolling's totals: the revenue benefit is valued again,
-- the retention and cost-savings benefits (valued at the configured settings) are rescaled to the
-- new margin and share, and costs stay as they are.
CREATE OR REPLACE TEMP MACRO roi_under(incremental, retention, savings, cost, margin, share, risk) AS
    ((incremental * margin * share
      + retention * coalesce(margin * share
                             / nullif(getvariable('gross_margin') * getvariable('attribution_share'), 0), 0)
      + savings * coalesce(share / nullif(getvariable('attribution_share'), 0), 0))
     * (1 - risk) - cost) / nullif(cost, 0);
