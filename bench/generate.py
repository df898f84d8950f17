"""Canonical exports of N deals for the benchmark, written by DuckDB in seconds.

Why not the demo generator: it writes row by row in Python (right for a small,
hand-tuned story), which would take minutes at 5M deals and measure the
generator rather than crm-roi. Here every column is a pure function of the row
number through DuckDB's `hash`, so the files are identical on every run and the
same N always means the same data.

Proportions per N deals: 2 stage-history rows per deal, N/10 customers, N/2 GL
lines, N/5 satisfaction responses; FX rates and CRM usage are calendar-sized.
A `delta` file changes a given share of existing deals (a later `updated_at`,
a new stage), the way a nightly incremental export does.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import yaml

FIRST_DAY = "2019-01-01"
DAYS = 8 * 365  # deals are created across eight years of history
GO_LIVE = "2023-01-01"
AS_OF = "2026-10-31"
ACCOUNTS = {
    "6100": "crm_software", "6110": "crm_implementation", "6120": "crm_training",
    "6130": "crm_support", "6140": "crm_hardware", "6200": "sales_marketing",
    "6300": "operating_cost",
}

# u(i, k): a uniform number in [0, 1) for row i and stream k, the same on every run.
_MACROS = """
SET enable_progress_bar = false;
CREATE OR REPLACE TEMP MACRO u(i, k) AS (hash(i, k) % 1000003) / 1000003.0;
CREATE OR REPLACE TEMP MACRO iso(t) AS strftime(t, '%Y-%m-%dT%H:%M:%SZ');
"""

# One deal per row number: about 70% closed, 40% of those won; created across DAYS.
_DEALS = """
WITH base AS (
    SELECT i,
        TIMESTAMP '{first}' + to_seconds(CAST(u(i, 1) * {days} * 86400 AS BIGINT)) AS created_at,
        u(i, 2) < 0.70 AS is_closed,
        u(i, 3) < 0.40 AS won_draw,
        to_days(CAST(5 + u(i, 4) * 115 AS INTEGER)) AS cycle,
        round(500 + u(i, 5) * u(i, 5) * 40000, 2) AS amount,
        CASE WHEN u(i, 6) < 0.1 THEN 'EUR' ELSE 'USD' END AS currency
    FROM range({start}, {stop}) AS t(i)
)
SELECT
    'D-' || lpad(CAST(i AS VARCHAR), 9, '0') AS deal_id,
    'Deal ' || i AS deal_name,
    'C-' || lpad(CAST(hash(i, 7) % {customers} AS VARCHAR), 8, '0') AS account_id,
    'U-' || lpad(CAST(hash(i, 8) % 200 AS VARCHAR), 3, '0') AS owner_id,
    CASE WHEN u(i, 9) < 0.5 THEN 'new_business' ELSE 'expansion' END AS pipeline,
    CASE WHEN NOT is_closed THEN 'qualified' WHEN won_draw THEN 'closedwon' ELSE 'closedlost' END AS stage,
    CASE WHEN is_closed THEN 'true' ELSE 'false' END AS is_closed,
    CASE WHEN is_closed AND won_draw THEN 'true' ELSE 'false' END AS is_won,
    printf('%.2f', amount) AS amount,
    currency,
    iso(created_at) AS created_at,
    CASE WHEN is_closed THEN iso(created_at + cycle) END AS closed_at,
    iso(created_at + CASE WHEN is_closed THEN cycle ELSE to_days(1) END) AS updated_at,
    CASE WHEN u(i, 10) < 0.002 THEN 'true' ELSE 'false' END AS is_deleted
FROM base
"""

_STAGE_HISTORY = """
SELECT deal_id, 'appointmentscheduled' AS stage, created_at AS entered_at FROM deals
UNION ALL
SELECT deal_id, stage, coalesce(closed_at, updated_at) FROM deals
"""

_CUSTOMERS = """
SELECT
    'C-' || lpad(CAST(i AS VARCHAR), 8, '0') AS customer_id,
    'Customer ' || i AS name,
    iso(TIMESTAMP '2015-01-01' + to_seconds(CAST(u(i, 11) * 11 * 365 * 86400 AS BIGINT))) AS started_at,
    CASE WHEN u(i, 12) < 0.25
         THEN iso(TIMESTAMP '2026-01-01' + to_seconds(CAST(u(i, 13) * 300 * 86400 AS BIGINT))) END AS churned_at,
    printf('%.2f', 100 + u(i, 14) * 2000) AS mrr
FROM range({customers}) AS t(i)
"""

_FINANCE = """
SELECT
    'GL-' || lpad(CAST(i AS VARCHAR), 10, '0') AS entry_id,
    strftime(DATE '{first}' + CAST(u(i, 15) * {days} AS INTEGER), '%Y-%m-%d') AS posted_on,
    ['6100', '6110', '6120', '6130', '6140', '6200', '6300', '7000'][1 + CAST(floor(u(i, 16) * 8) AS INTEGER)]
        AS account,
    'Line ' || i AS description,
    'Vendor ' || (hash(i, 17) % 500) AS vendor,
    printf('%.2f', 10 + u(i, 18) * 5000) AS amount,
    'USD' AS currency
FROM range({lines}) AS t(i)
"""

_FX = """
SELECT strftime(d, '%Y-%m-%d') AS date, c AS currency, printf('%.4f', r + 0.05 * u(epoch(d), 19)) AS rate_to_base
FROM range(DATE '2018-12-01', DATE '2026-12-01', INTERVAL 1 DAY) AS t(d),
     (VALUES ('EUR', 1.05), ('GBP', 1.25)) AS c(c, r)
"""

_CSAT = """
SELECT
    'R-' || lpad(CAST(i AS VARCHAR), 9, '0') AS response_id,
    'C-' || lpad(CAST(hash(i, 20) % {customers} AS VARCHAR), 8, '0') AS customer_id,
    iso(TIMESTAMP '{first}' + to_seconds(CAST(u(i, 21) * {days} * 86400 AS BIGINT))) AS responded_at,
    CAST(1 + floor(u(i, 22) * 5) AS INTEGER) AS score
FROM range({responses}) AS t(i)
"""

_USAGE = """
SELECT strftime(m, '%Y-%m-%d') AS period_start, CAST(40 + u(epoch(m), 23) * 60 AS INTEGER) AS active_users,
       120 AS licensed_seats
FROM range(DATE '{go_live}', DATE '{as_of}', INTERVAL 1 MONTH) AS t(m)
"""

# A changed deal: closed and won a week after its last update (or re-stamped if closed).
_DELTA = """
SELECT * REPLACE (
    'closedwon' AS stage, 'true' AS is_closed, 'true' AS is_won,
    coalesce(closed_at, iso(CAST(updated_at AS TIMESTAMP) + INTERVAL 7 DAY)) AS closed_at,
    iso(CAST(updated_at AS TIMESTAMP) + INTERVAL 7 DAY) AS updated_at)
FROM read_csv($deals, all_varchar = true)
WHERE hash(deal_id, $round) % 10000 < $per_10000
"""


def _copy(con: duckdb.DuckDBPyConnection, query: str, path: Path, params: dict | None = None) -> None:
    # The queries are this module's constants; only the output path is outside them.
    con.execute(f"COPY ({query}) TO '{path}' (HEADER, DELIMITER ',')", params or {})


def generate(folder: Path, deals: int) -> Path:
    """Write the canonical exports and a crm_roi.yaml for `deals` deals into `folder`; return the config."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"first": FIRST_DAY, "days": DAYS, "start": 0, "stop": deals,
             "customers": max(deals // 10, 1), "lines": max(deals // 2, 1), "responses": max(deals // 5, 1),
             "go_live": GO_LIVE, "as_of": AS_OF}
    con = duckdb.connect()
    con.execute(_MACROS)
    con.execute(f"CREATE TEMP VIEW deals AS {_DEALS.format(**sizes)}")
    _copy(con, "SELECT * FROM deals", folder / "deals.csv")
    _copy(con, _STAGE_HISTORY, folder / "deal_stage_history.csv")
    _copy(con, _CUSTOMERS.format(**sizes), folder / "customers.csv")
    _copy(con, _FINANCE.format(**sizes), folder / "finance_gl.csv")
    _copy(con, _FX, folder / "fx_rates.csv")
    _copy(con, _CSAT.format(**sizes), folder / "csat.csv")
    _copy(con, _USAGE.format(**sizes), folder / "crm_usage.csv")
    con.close()
    config = {
        "as_of": AS_OF, "go_live": GO_LIVE, "baseline_months": 12, "period": "month",
        "gross_margin": 0.6, "attribution_share": 0.4, "risk_adjustment": 0.1, "arpa_monthly": 1500,
        "duckdb_path": "crm_roi.duckdb",
        "sources": [{"kind": "files", "path": ".", "profile": "canonical"}],
        "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS},
    }
    path = folder / "crm_roi.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def write_delta(folder: Path, share: float, round_number: int = 1) -> Path:
    """Write `deals_delta_<round>.csv`: `share` of the deals changed, as a nightly export would."""
    path = folder / f"deals_delta_{round_number:03d}.csv"
    con = duckdb.connect()
    con.execute(_MACROS)
    _copy(con, _DELTA, path, {"deals": str(folder / "deals.csv"), "round": round_number,
                              "per_10000": round(share * 10000)})
    con.close()
    return path
