"""The KPI and ROI models transpiled to Spark SQL and run on PySpark give DuckDB's figures, cell by cell.

The demo data is staged and modelled in DuckDB, its staging tables go to a local SparkSession as
parquet, and every KPI and ROI table is built there from the same sql/ files (pipelines/portable.py).
Twice: with the demo's settings (months, the flat counterfactual) and with weeks and the control
group, so that every branch the settings pick is compared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from decimal import Decimal, localcontext

import duckdb
import pytest
import sqlglot
import yaml
from pyspark.sql import SparkSession

from pipelines.config import load_settings
from pipelines.demo import DEMO_CONFIG, DEMO_DATA
from pipelines.portable import SPARK_MODELS, PortabilityError, build_on_spark, main, transpile
from pipelines.sql_files import sql_text
from pipelines.warehouse import run_variables
from tests.conftest import run_pipeline

# Floats agree to 1e-9 relative (and 1e-9 absolute, for figures that cancel to about 0): both engines
# add IEEE doubles, but in another order (threads, partitions). A sum of n terms moves by at most
# n x 2^-53 of the sum of their magnitudes, 6e-13 for the demo's 5,518 deals, and ratios, NPV and
# percentiles add a few roundings more. A different rule (one deal, one period, one day) moves a
# figure by 1e-5 or more, so 1e-9 keeps three orders of magnitude on each side.
REL, ABS = 1e-9, 1e-9

VARIANTS = {
    "demo": {},
    "weeks-control": {"period": "week", "counterfactual": {"method": "control", "normalise_by": "active_owners",
                                                          "control": {"column": "segment", "values": ["Americas"]}}},
}


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory):
    """One local SparkSession for the module: two cores, two shuffle partitions, no UI, UTC."""
    session = (
        SparkSession.builder.master("local[2]").appName("crm-roi-portable")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark_warehouse")))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module", params=list(VARIANTS))
def built(request, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    """The demo modelled by DuckDB (a read-only connection) and by Spark, with one variant's settings."""
    folder = tmp_path_factory.mktemp(request.param)
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8")) | VARIANTS[request.param]
    config["sources"][0]["path"] = str(DEMO_DATA)
    config["finance"]["path"] = str(DEMO_DATA / config["finance"]["path"])
    config["duckdb_path"] = str(folder / "demo.duckdb")
    config["data_roots"] = [str(DEMO_DATA), str(folder)]
    (folder / "crm_roi.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    settings = load_settings(folder / "crm_roi.yaml")
    con = run_pipeline(settings)
    con.close()
    assert build_on_spark(spark, settings.duckdb_path, settings, folder / "parquet") == [t.name for t in SPARK_MODELS]
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        yield con, spark


def _same(a: object, b: object) -> bool:
    if isinstance(a, float | Decimal) or isinstance(b, float | Decimal):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=REL, abs_tol=ABS)
    return a == b and type(a) is type(b)


def _keyed(rows: list[tuple]) -> dict[tuple, tuple]:
    """Rows by their values other than floats: the tables' keys (a period, a KPI, a method, a draw)."""
    keyed = {tuple(repr(v) for v in row if not isinstance(v, float | Decimal)): row for row in rows}
    assert len(keyed) == len(rows), "rows not told apart by their non-float values"
    return keyed


@pytest.mark.slow  # a JVM: the SparkSession
@pytest.mark.parametrize("table", [t.name for t in SPARK_MODELS])
def test_every_cell_of_every_kpi_and_roi_table_matches_duckdb(built, table):
    con, spark = built
    cursor = con.execute(f"SELECT * FROM {table}")
    duck_columns = [d[0] for d in cursor.description]
    duck = _keyed(cursor.fetchall())
    frame = spark.table(table)
    assert frame.columns == duck_columns
    on_spark = _keyed([tuple(row) for row in frame.collect()])
    assert duck, f"{table} is empty: nothing compared"
    assert on_spark.keys() == duck.keys()
    differing = [(column, key, duck[key][i], on_spark[key][i]) for key in duck
                 for i, column in enumerate(duck_columns) if not _same(duck[key][i], on_spark[key][i])]
    assert not differing, differing[:5]


@pytest.mark.slow  # a JVM: the SparkSession
def test_the_bootstrap_draws_weights_in_both_engines(built):
    # Not a constant table compared with itself: the draws spread, around the point estimate.
    con, _ = built
    low, high, point = con.execute(
        "SELECT incremental_revenue_p05, incremental_revenue_p95, incremental_revenue FROM roi.summary").fetchone()
    assert low < point < high


# -- the settings' other branches, on Spark, against hand-worked values ---------------------------

def _spark_value(spark: SparkSession, sql: str, **variables: object) -> object:
    (row,) = spark.sql(transpile(sql, variables)).collect()
    return row[0]


@pytest.mark.slow  # a JVM: the SparkSession
@pytest.mark.parametrize(("period", "expected"), [
    ("month", dt.date(2025, 5, 1)), ("quarter", dt.date(2025, 4, 1)), ("week", dt.date(2025, 5, 12)),  # a Monday
])
def test_period_of_and_the_spine_on_spark(spark, period, expected):
    assert _spark_value(spark, "SELECT period_of(DATE '2025-05-17')", period=period) == expected
    # The spine from 2025-05-17 to as_of 2025-07-02: months May..Jul, quarters Q2..Q3, weeks 12 May..30 Jun.
    count = {"month": 3, "quarter": 2, "week": 8}[period]
    assert _spark_value(spark, "SELECT count(*) FROM period_spine(DATE '2025-05-17')", period=period,
                        as_of=dt.date(2025, 7, 2)) == count


@pytest.mark.slow  # a JVM: the SparkSession
@pytest.mark.parametrize(("sql", "expected"), [
    # DuckDB counts the boundaries crossed: Jan 15 -> Mar 1 crosses two month starts, one quarter start.
    ("SELECT date_diff('month', DATE '2024-01-15', DATE '2024-03-01')", 2),
    ("SELECT date_diff('quarter', DATE '2024-03-31', DATE '2024-04-01')", 1),
    ("SELECT date_diff('day', TIMESTAMP '2024-03-01 23:59:00', TIMESTAMP '2024-03-02 00:01:00')", 1),
    ("SELECT date_diff('second', TIMESTAMP '2024-03-01 10:00:00.9', TIMESTAMP '2024-03-01 10:00:01.1')", 1),
    # Weeks: 16 days is 2 whole weeks.
    ("SELECT periods_between(DATE '2024-01-01', DATE '2024-01-17')", 2),
])
def test_date_arithmetic_counts_as_duckdb_does(spark, sql, expected):
    assert _spark_value(spark, sql, period="week") == expected
    with duckdb.connect() as con:
        con.execute(sql_text("roi_macros"))
        con.execute("SET VARIABLE period = 'week'")
        assert con.execute(sql).fetchone()[0] == expected


@pytest.mark.slow  # a JVM: the SparkSession
def test_a_filtered_window_aggregate_counts_only_its_rows(spark):
    sql = ("SELECT max(n) FROM (SELECT count(*) FILTER (WHERE x % 2 = 0) OVER () AS n "
           "FROM range(0, 7) AS t(x))")  # 0, 2, 4, 6
    assert _spark_value(spark, sql) == 4


# -- the portable hash -------------------------------------------------------------------------------

def _mul32(x: int, c: int) -> int:
    return x * c % 2**32


def _mix32(x: int) -> int:
    m = _mul32(x, 0x85EBCA6B)
    return _mul32(m ^ (m >> 16), 0xC2B2AE35)


def _weight(deal_id: str, created_at: dt.datetime, draw: int, seed: int) -> int:
    """The weight as docs/portability.md describes it, in plain Python."""
    key = int(hashlib.md5(f"{deal_id}|{created_at:%Y-%m-%d %H:%M:%S.%f}".encode()).hexdigest()[:15], 16)
    seed_word = _mix32(seed)
    high = _mix32((key % 2**32) ^ _mul32(draw ^ seed_word, 0x9E3779B9))
    low = _mix32((key >> 32) ^ _mul32(draw ^ seed_word, 0x85EBCA77))
    u = high * 2**32 + low
    with localcontext(prec=60):  # exact to far below 2^-64
        cdf = Decimal(0)
        for k in range(13):
            cdf += Decimal(-1).exp() / math.factorial(k)
            if u < math.floor(cdf * 2**64):
                return k
    return 13


def test_the_weights_are_the_documented_hash():
    deals = [(f"D-{i}", dt.datetime(2025, 1, 1) + dt.timedelta(seconds=37 * i, microseconds=i)) for i in range(300)]
    with duckdb.connect() as con:
        con.execute(sql_text("roi_macros"))
        con.execute("SET VARIABLE uncertainty_seed = 7")
        got = con.execute(
            "SELECT deal_id, created_at, draw, poisson_weight(bootstrap_key(deal_id, created_at), draw) "
            "FROM (SELECT unnest($ids) AS deal_id, unnest($times) AS created_at), range(1, 31) AS t(draw)",
            {"ids": [d for d, _ in deals], "times": [t for _, t in deals]},
        ).fetchall()
    assert len(got) == 9000
    assert [w for *_, w in got] == [_weight(d, t, draw, 7) for d, t, draw, _ in got]
    assert len({w for *_, w in got}) >= 5  # 0..4 at least, in 9,000 draws


# -- what has no Spark form ----------------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "variables", "words"), [
    ("SELECT hash(deal_id) AS h FROM staging.deals", {}, ["sql/probe.sql", "hash()"]),
    ("SELECT getvariable('nowhere') AS v", {}, ["sql/probe.sql", "'nowhere'", "run_variables"]),
    ("SELECT date_diff('hour', a, b) AS d FROM t", {}, ["sql/probe.sql", "date_diff('hour'"]),
])
def test_a_construct_without_a_spark_form_is_an_error_naming_it(sql, variables, words):
    with pytest.raises(PortabilityError) as error:
        transpile(sql, variables, "probe")
    for word in words:
        assert word in str(error.value)


def test_every_run_variable_a_model_reads_is_set():
    settings = load_settings(DEMO_CONFIG)
    assert {v for t in SPARK_MODELS for v in t.variables} <= set(run_variables(settings))


def test_the_statements_for_a_shared_warehouse_come_in_build_order(tmp_path, capsys):
    main(["--config", str(DEMO_CONFIG), "--out", str(tmp_path)])
    written = sorted(tmp_path.iterdir())
    assert [p.name for p in written] == [f"{n:02d}_{t.name}.sql" for n, t in enumerate(SPARK_MODELS, 1)]
    assert capsys.readouterr().out.split() == [str(p) for p in written]
    for path, spec in zip(written, SPARK_MODELS, strict=True):
        statement = sqlglot.parse_one(path.read_text(encoding="utf-8"), read="spark")
        assert isinstance(statement, sqlglot.exp.Create) and statement.this.sql() == spec.name
    # The demo's settings are written in (its go-live decides each period's phase), no variable is left.
    periodic = written[0].read_text(encoding="utf-8")
    assert "CAST('2025-01-01' AS DATE)" in periodic and "GETVARIABLE" not in periodic.upper()


def test_a_config_error_is_one_line(tmp_path):
    (tmp_path / "crm_roi.yaml").write_text("go_live: soon\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stop:
        main(["--config", str(tmp_path / "crm_roi.yaml"), "--out", str(tmp_path / "out")])
    assert "crm_roi.yaml" in str(stop.value.code) and "\n" not in str(stop.value.code)
