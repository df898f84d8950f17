"""Pandera runs on every row: streamed in Arrow batches, checked eagerly, never skipped."""

import duckdb

from pipelines import validation
from pipelines.schemas import DealAmounts, Deals, FxRates


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
    (outcome,) = validation.validate_table(con, "deals", [Deals])
    assert outcome.rows_checked == 5_000
    assert outcome.failing_rows == 1
    assert outcome.failures_by_check == {"is_won implies is_closed": 1}
    assert outcome.sample[0]["check"] == "is_won implies is_closed"
    assert '"deal_id":"D4321"' in outcome.sample[0]["value"]


def test_a_valid_table_passes():
    con = duckdb.connect()
    _deals_table(con, rows=100, bad_row=-1)
    (outcome,) = validation.validate_table(con, "deals", [Deals])
    assert outcome.passed and outcome.rows_checked == 100


def test_a_wrong_type_fails_every_row():
    con = duckdb.connect()
    con.execute("CREATE TABLE fx AS SELECT 'f' AS source, DATE '2025-01-01' AS date, "
                "'EUR' AS currency, '1.1' AS rate_to_base FROM range(3)")
    (outcome,) = validation.validate_table(con, "fx", [FxRates])
    assert outcome.failing_rows == 3
    assert any("dtype" in check for check in outcome.failures_by_check)


def test_each_schema_of_a_table_gets_its_own_outcome_from_one_pass(monkeypatch):
    monkeypatch.setattr(validation, "BATCH_ROWS", 1_000)
    con = duckdb.connect()
    _deals_table(con, rows=3_000, bad_row=2_500)
    con.execute("UPDATE deals SET amount = NULL, amount_base = NULL WHERE deal_id IN ('D7', 'D1500')")
    together = validation.validate_table(con, "deals", [Deals, DealAmounts])
    apart = [validation.validate_table(con, "deals", [schema])[0] for schema in (Deals, DealAmounts)]
    assert together == apart
    assert [o.failing_rows for o in together] == [1, 2]  # the won-but-open deal; the two without amounts


def test_a_column_the_table_lacks_fails_every_row():
    con = duckdb.connect()
    con.execute("CREATE TABLE fx AS SELECT 'f' AS source, DATE '2025-01-01' AS date, 'EUR' AS currency FROM range(4)")
    (outcome,) = validation.validate_table(con, "fx", [FxRates])
    assert outcome.failing_rows == 4
    assert any("column_in_dataframe" in check for check in outcome.failures_by_check)
