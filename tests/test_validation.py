"""Pandera runs on every row: streamed in Arrow batches, checked eagerly, never skipped."""

import duckdb

from pipelines import validation
from pipelines.schemas import Deals, FxRates


def _deals_table(con: duckdb.DuckDBPyConnection, rows: int, bad_row: int) -> None:
    # Row `bad_row` is won but not closed; every other row is a valid open deal.
    con.execute(
        """
        CREATE TABLE deals AS
        SELECT 'files_1' AS source, 'D' || i AS deal_id, false AS is_closed, i = $bad AS is_won,
               false AS is_deleted, 10.0::DOUBLE AS amount, 'USD' AS currency,
               10.0::DOUBLE AS amount_base, TIMESTAMP '2025-01-01' AS created_at,
               NULL::TIMESTAMP AS closed_at, TIMESTAMP '2025-01-01' AS updated_at
        FROM range($rows) AS t(i)
        """,
        {"rows": rows, "bad": bad_row},
    )


def test_a_bad_value_in_a_later_batch_is_caught(monkeypatch):
    monkeypatch.setattr(validation, "BATCH_ROWS", 1_000)
    con = duckdb.connect()
    _deals_table(con, rows=5_000, bad_row=4_321)
    outcome = validation.validate_table(con, "deals", Deals)
    assert outcome.rows_checked == 5_000
    assert outcome.failing_rows == 1
    assert outcome.failures_by_check == {"is_won implies is_closed": 1}
    assert outcome.sample[0]["check"] == "is_won implies is_closed"
    assert '"deal_id":"D4321"' in outcome.sample[0]["value"]


def test_a_valid_table_passes():
    con = duckdb.connect()
    _deals_table(con, rows=100, bad_row=-1)
    outcome = validation.validate_table(con, "deals", Deals)
    assert outcome.passed and outcome.rows_checked == 100


def test_a_wrong_type_fails_every_row():
    con = duckdb.connect()
    con.execute("CREATE TABLE fx AS SELECT 'f' AS source, DATE '2025-01-01' AS date, "
                "'EUR' AS currency, '1.1' AS rate_to_base FROM range(3)")
    outcome = validation.validate_table(con, "fx", FxRates)
    assert outcome.failing_rows == 3
    assert any("dtype" in check for check in outcome.failures_by_check)
