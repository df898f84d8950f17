"""Property tests: the shared parsers (sql/macros.sql) and the KPI/ROI invariants.

The parsers run in an in-memory DuckDB with the project's macros. The invariants run
the real pipeline (tests.conftest.run_pipeline) on small generated exports, one fresh
folder per example; examples are few (the whole module runs in well under a minute).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shutil
import tempfile
from pathlib import Path

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import load_settings
from tests.conftest import ACCOUNTS, DEAL_COLUMNS, GL_COLUMNS, deal, gl, run_pipeline, write_csv

REPO = Path(__file__).resolve().parent.parent
PARSER_SETTINGS = settings(max_examples=300, deadline=None)
PIPELINE_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def sql():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute((REPO / "sql" / "macros.sql").read_text(encoding="utf-8"))
    yield lambda expr, value: con.execute(f"SELECT {expr}", [value]).fetchone()[0]
    con.close()


# --- parse_number -------------------------------------------------------------------------------


def _grouped(digits: str) -> str:
    return f"{int(digits):,}"


@PARSER_SETTINGS
@given(
    value=st.decimals(min_value=-10**12, max_value=10**12, places=2, allow_nan=False),
    thousands=st.booleans(),
    symbol=st.sampled_from(["", "$", "€", "£", "¥", "USD ", "EUR"]),
    suffix=st.booleans(),
    accounting=st.booleans(),
    pad=st.sampled_from(["", " ", "  "]),
)
def test_parse_number_equals_the_python_value(sql, value, thousands, symbol, suffix, accounting,
                                              pad):
    magnitude = abs(value)
    whole, _, cents = f"{magnitude:.2f}".partition(".")
    body = f"{_grouped(whole) if thousands else whole}.{cents}"
    body = f"{body} {symbol.strip()}".strip() if suffix else f"{symbol}{body}"
    if value < 0:
        body = f"({body})" if accounting else f"-{body}"
    parsed = sql("parse_number(?)", f"{pad}{body}{pad}")
    assert parsed == pytest.approx(float(value), rel=1e-15, abs=1e-9), body


@PARSER_SETTINGS
@given(value=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_parse_number_round_trips_python_floats(sql, value):
    assert sql("parse_number(?)", repr(value)) == value


DIGITS = re.compile(r"\d")


def _digits_oracle(text: str) -> float:
    """What a parsed value must be: the text's own digits, point, exponent and sign (a three-letter
    currency code, which the parser accepts before or after the number, is not an exponent)."""
    kept = re.sub(r"[^0-9.eE+-]", "", re.sub(r"[A-Z]{3}", "", text))
    number = float(kept)
    return -abs(number) if "(" in text or number < 0 else number


@PARSER_SETTINGS
@given(st.one_of(
    st.text(),
    st.text(alphabet="0123456789.,-+()$€ eEaxnifNIy_/:'", max_size=14),
))
def test_garbage_never_parses_silently(sql, text):
    parsed = sql("parse_number(?)", text)
    if parsed is None:
        return
    assert math.isfinite(parsed)
    assert DIGITS.search(text), text
    assert parsed == pytest.approx(_digits_oracle(text), rel=1e-12), text


# --- parse_ts ------------------------------------------------------------------------------------


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)


@PARSER_SETTINGS
@given(
    moment=st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2099, 12, 30),
                        timezones=offsets),
    separator=st.sampled_from(["T", " "]),
    timespec=st.sampled_from(["seconds", "milliseconds", "microseconds", "minutes"]),
)
def test_parse_ts_is_the_utc_instant(sql, moment, separator, timespec):
    text = moment.isoformat(sep=separator, timespec=timespec)
    expected = moment.astimezone(dt.UTC).replace(tzinfo=None)
    if timespec == "minutes":
        expected = expected.replace(second=0, microsecond=0)
    elif timespec == "seconds":
        expected = expected.replace(microsecond=0)
    elif timespec == "milliseconds":
        expected = expected.replace(microsecond=expected.microsecond // 1000 * 1000)
    assert sql("parse_ts(?)", text) == expected, text


@PARSER_SETTINGS
@given(day=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)))
def test_bare_date_is_midnight_utc(sql, day):
    assert sql("parse_ts(?)", day.isoformat()) == dt.datetime.combine(day, dt.time())


@PARSER_SETTINGS
@given(st.text(max_size=30))
def test_garbage_timestamps_are_null_unless_iso(sql, text):
    parsed = sql("parse_ts(?)", text)
    if parsed is not None:
        assert re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}([T ].*)?", text.strip(), re.S), text
        # An offset may move the instant across a year boundary, never further.
        assert abs(parsed.year - int(text.strip()[:4])) <= 1, text


# --- KPI and ROI invariants on generated exports -------------------------------------------------

AS_OF = dt.date(2025, 3, 31)
FIRST_DAY = dt.date(2023, 10, 1)
DAYS = (AS_OF - FIRST_DAY).days + 20  # a few events after as_of too


@st.composite
def datasets(draw):
    deals = []
    for i in range(draw(st.integers(0, 12))):
        created = FIRST_DAY + dt.timedelta(days=draw(st.integers(0, DAYS)))
        outcome = draw(st.sampled_from([None, True, False]))
        closed = created + dt.timedelta(days=draw(st.integers(0, 120)))
        amount = draw(st.sampled_from(["", "0", "100", "2500.50", "-300", "99999"]))
        deals.append(deal(f"D{i}", created.isoformat(), closed.isoformat() if outcome is not None
                          else "", won=outcome, amount=amount))
    customers = []
    for i in range(draw(st.integers(0, 8))):
        started = FIRST_DAY + dt.timedelta(days=draw(st.integers(0, DAYS)))
        churn = draw(st.one_of(st.none(), st.integers(0, 400)))
        churned = "" if churn is None else (started + dt.timedelta(days=churn)).isoformat()
        customers.append([f"K{i}", f"Customer {i}", started.isoformat(), churned, "100"])
    finance = []
    for i in range(draw(st.integers(0, 8))):
        posted = FIRST_DAY + dt.timedelta(days=draw(st.integers(0, DAYS)))
        account = draw(st.sampled_from(["6100", "6110", "6120", "6130", "6140", "6200", "6300"]))
        amount = draw(st.decimals(min_value=0, max_value=50000, places=2))
        finance.append(gl(f"G{i}", posted.isoformat(), account, str(amount)))
    config = {
        "as_of": AS_OF.isoformat(),
        "go_live": draw(st.sampled_from(["2024-07-01", "2025-01-01", "2024-10-15"])),
        "baseline_months": draw(st.sampled_from([3, 6, 12])),
        "period": draw(st.sampled_from(["month", "quarter", "week"])),
        "arpa_monthly": draw(st.sampled_from([None, 50.0])),
        "gross_margin": draw(st.sampled_from([1.0, 0.6])),
    }
    return deals, customers, finance, config


def period_of(day: dt.date, period: str) -> dt.date:
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return dt.date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    return day - dt.timedelta(days=day.weekday())


def calendar_periods(first: dt.date, last: dt.date, period: str) -> int:
    start, end = period_of(first, period), period_of(last, period)
    if period == "week":
        return (end - start).days // 7 + 1
    months = (end.year - start.year) * 12 + end.month - start.month
    return months // (3 if period == "quarter" else 1) + 1


def build(folder: Path, deals, customers, finance, config) -> duckdb.DuckDBPyConnection:
    write_csv(folder / "exports" / "deals.csv", DEAL_COLUMNS, deals)
    write_csv(folder / "exports" / "customers.csv",
              ["customer_id", "name", "started_at", "churned_at", "mrr"], customers)
    write_csv(folder / "finance_gl.csv", GL_COLUMNS, finance)
    full = {
        **config,
        "sources": [{"kind": "files", "path": "exports", "profile": "canonical"}],
        "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS},
    }
    (folder / "crm_roi.yaml").write_text(yaml.safe_dump(full), encoding="utf-8")
    return run_pipeline(load_settings(folder / "crm_roi.yaml"))


@PIPELINE_SETTINGS
@given(datasets())
def test_kpi_and_roi_invariants(data):
    deals, customers, finance, config = data
    folder = Path(tempfile.mkdtemp(prefix="crm_roi_prop_"))
    try:
        with build(folder, deals, customers, finance, config) as con:
            check_invariants(con, config)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_invariants(con: duckdb.DuckDBPyConnection, config: dict) -> None:
    settings_ = load_settings_from(config)
    periodic = con.execute(
        "SELECT period_start, period_end, deals_won, deals_lost, win_rate, churn_rate, "
        "retention_rate FROM kpi.periodic ORDER BY period_start"
    ).fetchall()
    assert len(periodic) == calendar_periods(settings_["baseline_start"], AS_OF, config["period"])
    closed = _closed_per_period(con, config["period"])
    for start, _end, won, lost, win_rate, churn, retention in periodic:
        assert won + lost <= closed.get(start, 0)
        for rate in (win_rate, churn):
            assert rate is None or 0 <= rate <= 1
        if win_rate is not None:
            assert win_rate == pytest.approx(won / (won + lost))
        if churn is None:
            assert retention is None
        else:
            assert retention == pytest.approx(1 - churn)

    rolling = con.execute(
        "SELECT benefit_total, cost_total, net_benefit, cumulative_benefit, cumulative_cost, "
        "payback_reached FROM roi.rolling ORDER BY period_start"
    ).fetchall()
    assert rolling, "go-live is before as_of, so there is at least one complete period"
    running = 0.0
    previous_cost = -math.inf
    for benefit, cost, net, cum_benefit, cum_cost, payback in rolling:
        running += net
        assert net == pytest.approx(benefit - cost, abs=1e-6)
        assert cum_benefit - cum_cost == pytest.approx(running, abs=1e-6)
        assert cum_cost >= previous_cost - 1e-9  # every CRM cost is >= 0
        previous_cost = cum_cost
        assert payback == (cum_benefit >= cum_cost)


def _closed_per_period(con: duckdb.DuckDBPyConnection, period: str) -> dict[dt.date, int]:
    closed = con.execute(
        "SELECT CAST(closed_at AS DATE) FROM staging.deals WHERE is_closed AND NOT is_deleted"
    ).fetchall()
    counts: dict[dt.date, int] = {}
    for (day,) in closed:
        key = period_of(day, period)
        counts[key] = counts.get(key, 0) + 1
    return counts


def load_settings_from(config: dict) -> dict:
    go_live = dt.date.fromisoformat(config["go_live"])
    months = go_live.year * 12 + go_live.month - 1 - config["baseline_months"]
    return {"baseline_start": dt.date(months // 12, months % 12 + 1, go_live.day)}


def test_calendar_period_count_helper():
    assert calendar_periods(dt.date(2024, 1, 1), dt.date(2025, 3, 31), "month") == 15
    assert calendar_periods(dt.date(2024, 1, 15), dt.date(2025, 3, 31), "quarter") == 5
    assert calendar_periods(dt.date(2025, 3, 3), dt.date(2025, 3, 31), "week") == 5
