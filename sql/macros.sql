-- Parsers shared by every staging model. One definition of "parses" for all
-- sources: a non-empty value that yields NULL here rejects its row.

-- ISO 8601 -> naive UTC timestamp. An offset is honoured; no offset means UTC
-- (the connection's TimeZone is UTC); a bare date is midnight UTC.
-- The first two branches are fast paths for the shapes nearly every export uses
-- (canonical UTC and a bare date); they give what the general branch gives, without
-- its regex and time-zone work, which dominate staging time at millions of rows.
CREATE OR REPLACE TEMP MACRO parse_ts(s) AS
    CASE WHEN s IS NULL THEN NULL
         WHEN s LIKE '____-__-__T__:__:__Z' THEN try_cast(s AS TIMESTAMP)
         WHEN s LIKE '____-__-__' THEN try_cast(s AS TIMESTAMP)
         WHEN NOT regexp_full_match(trim(s), '\d{4}-\d{1,2}-\d{1,2}([T ].*)?') THEN NULL
         ELSE timezone('UTC', try_cast(trim(s) AS TIMESTAMPTZ)) END;

CREATE OR REPLACE TEMP MACRO parse_date(s) AS CAST(parse_ts(s) AS DATE);

-- Plausibility window for business timestamps: [1900-01-01, 2100-01-01) UTC.
-- A value outside it is a placeholder or a typo, not a date: "0001-01-01" and
-- "1899-12-30" are tool defaults (.NET, Excel's day zero), "9999-12-31" means "never",
-- and "2205" is a slipped "2025". A finance analyst wants such a row quarantined
-- ('implausible <column>') rather than silently counted in no period or, as an
-- updated_at, winning every duplicate. Dates between 1900 and 1970 are kept: a
-- customer since 1965 is rare but real, and nothing in the method needs Unix time.
CREATE OR REPLACE TEMP MACRO plausible_until() AS DATE '2100-01-01';
CREATE OR REPLACE TEMP MACRO implausible_ts(t) AS
    t < TIMESTAMP '1900-01-01' OR t >= plausible_until();

-- Plain decimals, also with a currency symbol or code, thousands separators
-- ("1,000.50") or accounting negatives ("(500.00)"). NaN and infinity do not parse.
CREATE OR REPLACE TEMP MACRO strip_currency(s) AS
    regexp_replace(s, '^(-?)\s*(?:[$€£¥]|[A-Z]{3})\s*|\s*(?:[$€£¥]|[A-Z]{3})$', '\1', 'g');
-- Symbols may sit outside or inside accounting parentheses: "$(250.00)", "($1,000.50)".
CREATE OR REPLACE TEMP MACRO clean_number(s) AS
    strip_currency(regexp_replace(strip_currency(trim(s)), '^\((.*)\)$', '-\1'));
-- After cleaning, only a plain decimal (optionally with an exponent) is cast: DuckDB's
-- own cast would also take "1_000", so anything else is refused rather than guessed.
-- A European decimal comma ("1.234,50 €") does not parse (rejected with its reason):
-- "1,234" is a thousand in one convention and 1.234 in the other, so no guess is safe.
-- A lone "1.234" is read with a decimal point, as in ISO and every canonical export.
-- Plain expressions, not a subquery: a subquery macro is evaluated for every row,
-- even inside a CASE branch that most rows never reach.
CREATE OR REPLACE TEMP MACRO without_thousands(v) AS
    CASE WHEN regexp_full_match(v, '[+-]?\d{1,3}(,\d{3})+(\.\d+)?') THEN replace(v, ',', '') ELSE v END;
CREATE OR REPLACE TEMP MACRO plain_decimal(v) AS
    CASE WHEN regexp_full_match(v, '[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?') THEN try_cast(v AS DOUBLE) END;
CREATE OR REPLACE TEMP MACRO finite_or_null(x) AS CASE WHEN isfinite(x) THEN x END;
CREATE OR REPLACE TEMP MACRO parse_number_general(s) AS
    finite_or_null(plain_decimal(without_thousands(clean_number(s))));

-- A number written with a decimal comma ("1.234,50", "1 234,50 €", "(800,00)", "-12,5") as a plain
-- decimal ("1234.50"); null for anything else, which then lands as it came and is rejected. Only
-- for a source whose decimal_separator is ',': "1,234" is a thousand in the other convention.
CREATE OR REPLACE TEMP MACRO decimal_comma_to_point(s) AS
    CASE WHEN regexp_full_match(clean_number(s), '[+-]?(\d{1,3}([. \x{00A0}\x{202F}]\d{3})+|\d+)(,\d+)?')
         THEN replace(regexp_replace(clean_number(s), '[. \x{00A0}\x{202F}]', '', 'g'), ',', '.') END;

-- Fast path: a value that starts with a digit, '-' or '.', ends with a digit, has no
-- '_' and casts to a finite DOUBLE is a plain decimal, read as the general macro would
-- read it; everything else (symbols, separators, parentheses, junk) takes the general one.
CREATE OR REPLACE TEMP MACRO parse_number(s) AS
    CASE WHEN s IS NULL THEN NULL
         WHEN strpos(s, '_') = 0 AND ascii(s) BETWEEN 45 AND 57 AND ascii(right(s, 1)) BETWEEN 48 AND 57
              AND isfinite(try_cast(s AS DOUBLE)) THEN try_cast(s AS DOUBLE)
         ELSE parse_number_general(s) END;

-- A key-scoped staging build (pipelines/transform.py) sets scope_after to the last batch of
-- the previous build and fills scope_keys with the keys later batches touched; every other
-- build leaves scope_after unset. A keyed model reads its raw rows as
--   scoped AS MATERIALIZED (raw rows WHERE in_scope(key, _batch_id)): a scoped build's few
--       rows, read from raw once (empty otherwise),
--   input AS NOT MATERIALIZED (raw rows WHERE NOT scoped_build() UNION ALL scoped): a full
--       build streams raw, which beats materialising millions of parsed rows.
-- Both filters fold to constants, so each build pays only for its own branch. Keys are
-- matched in every source (a superset, rebuilt whole): matching (source, key) pairs built a
-- struct for every row.
CREATE TEMP TABLE IF NOT EXISTS scope_keys (key VARCHAR);
CREATE OR REPLACE TEMP MACRO scoped_build() AS getvariable('scope_after') IS NOT NULL;
CREATE OR REPLACE TEMP MACRO in_scope(raw_key, batch) AS
    scoped_build() AND (batch > getvariable('scope_after') OR nullif(trim(raw_key), '') IN (SELECT key FROM scope_keys));

CREATE OR REPLACE TEMP MACRO parse_bool(s) AS
    CASE WHEN lower(trim(s)) IN ('true', 't', '1', 'yes', 'y') THEN true
         WHEN lower(trim(s)) IN ('false', 'f', '0', 'no', 'n') THEN false END;

-- A non-empty value that failed to parse.
CREATE OR REPLACE TEMP MACRO unparsed(raw_value, parsed_value) AS
    raw_value IS NOT NULL AND parsed_value IS NULL;

-- Landing helpers for export profiles (see connectors/files/reader.py).
CREATE OR REPLACE TEMP MACRO iso_from_formats(s, formats) AS
    strftime(try_strptime(trim(s), formats), '%Y-%m-%dT%H:%M:%S');
CREATE OR REPLACE TEMP MACRO local_to_utc_iso(s, tz) AS
    CASE WHEN s IS NULL OR regexp_matches(s, '(Z|[+-]\d{2}:?\d{2})$') THEN s
         ELSE coalesce(
             strftime(timezone('UTC', timezone(tz, try_cast(s AS TIMESTAMP))), '%Y-%m-%dT%H:%M:%SZ'),
             s) END;

-- The calendar periods of the run: month, calendar quarter or ISO week
-- (Monday), from the one holding first_day to the one holding as_of.
CREATE OR REPLACE TEMP MACRO period_step() AS
    CASE getvariable('period') WHEN 'month' THEN INTERVAL 1 MONTH
                               WHEN 'quarter' THEN INTERVAL 3 MONTH
                               ELSE INTERVAL 7 DAY END;
CREATE OR REPLACE TEMP MACRO period_of(d) AS
    CAST(date_trunc(getvariable('period'), CAST(d AS DATE)) AS DATE);
CREATE OR REPLACE TEMP MACRO period_spine(first_day) AS TABLE
    SELECT CAST(s AS DATE) AS period_start, CAST(s + period_step() AS DATE) AS period_end
    FROM generate_series(CAST(period_of(first_day) AS TIMESTAMP),
                         CAST(period_of(getvariable('as_of')) AS TIMESTAMP),
                         period_step()) AS t(s);

-- The rate of every currency on every day from its first rate on: the most recent rate
-- on or before that day, the last one running to the end of plausible time (no row with
-- a later date survives the row rules). Pricing millions of rows is then a hash join on
-- (currency, fx_day(date)), several times faster than an ASOF join. `rates` names the
-- table (staging.fx_rates), so that the macro binds when used, not when defined.
CREATE OR REPLACE TEMP MACRO fx_day(d) AS least(CAST(d AS DATE), plausible_until());
CREATE OR REPLACE TEMP MACRO fx_days(rates) AS TABLE
    SELECT currency, CAST(unnest(generate_series(date, coalesce(next_date - 1, plausible_until()),
                                                 INTERVAL 1 DAY)) AS DATE) AS day, rate_to_base
    FROM (SELECT currency, date, rate_to_base,
                 lead(date) OVER (PARTITION BY currency ORDER BY date) AS next_date
          FROM query_table(rates));

-- The one dedup rule of every staging model: the last version of each key among its parsed
-- rows (`rows` names its CTE; `key` is the parsed key, an expression or a struct). The latest
-- `version` (where the model orders versions by a time, as deals do by updated_at), then the
-- latest batch, then the latest line, wins. Keys are per source unless `per_source` is false
-- (one FX rate per day and currency, whichever source brought it). `within` splits a key
-- further when ranking (stage history: one row per entry time of a deal's stage), while
-- only `key` is used to find the keys landed more than once, the only ones ranked: sorting
-- every row was the largest cost of a full build. Rows without a key, and rows `alone`
-- says cannot be ordered, are each judged on their own.
CREATE OR REPLACE TEMP MACRO last_occurrence(rows, key, version := NULL, alone := false, within := NULL,
                                              per_source := true) AS TABLE
    WITH keyed AS NOT MATERIALIZED (
        SELECT *, CASE WHEN per_source THEN source ELSE '' END AS _version_source, key AS _version_key
        FROM query_table(rows)
    ),
    repeated AS (
        SELECT _version_source, _version_key FROM keyed WHERE _version_key IS NOT NULL
        GROUP BY ALL HAVING count(*) > 1
    )
    SELECT * EXCLUDE (_version_source, _version_key) FROM (
        SELECT * FROM keyed ANTI JOIN repeated USING (_version_source, _version_key)
        UNION ALL BY NAME
        SELECT * FROM keyed SEMI JOIN repeated USING (_version_source, _version_key)
        QUALIFY row_number() OVER (
            PARTITION BY _version_source, _version_key, within, CASE WHEN alone THEN _raw_rowid END
            ORDER BY version DESC NULLS LAST, _batch_id DESC, _raw_rowid DESC
        ) = 1
    );

-- Pipeline velocity: the revenue the open pipeline yields per day, open deals x win rate x
-- average deal size / mean sales cycle (days); null when a term is null or 0.
CREATE OR REPLACE TEMP MACRO pipeline_velocity(open_deals, win_rate, deal_size, cycle_days) AS
    CASE WHEN open_deals > 0 AND win_rate > 0 AND deal_size <> 0 AND cycle_days > 0
         THEN open_deals * win_rate * deal_size / cycle_days END;
