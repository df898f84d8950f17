"""The bootstrap's weights and reproducibility, and methods the configuration or the data cannot support."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.config import ConfigError, load_settings
from pipelines.sql_files import sql_text
from tests.conftest import ACCOUNTS, DEAL_COLUMNS, GL_COLUMNS, crm_roi, deal, gl, rows, run_pipeline, write_csv

REPO = Path(__file__).resolve().parent.parent


def won(deal_id: str, day: str, amount: float, **extra: str) -> dict:
    return deal(deal_id, day, day, won=True, amount=str(amount), **extra)


# Twelve baseline months and three after go-live, a few deals each, and a CRM cost.
DEALS = [won(f"D{m}-{k}", f"{2024 + m // 12}-{m % 12 + 1:02d}-{5 + 7 * k:02d}", 1000 + 250 * k + 40 * m)
         for m in range(15) for k in range(3)]
FINANCE = [gl("C", "2025-01-05", "6110", "2000")]


def summary(con) -> dict:
    (row,) = rows(con, "SELECT * FROM roi.summary")
    return row


# -- the weights ---------------------------------------------------------------------------------

def poisson_cdf(k: int) -> float:
    return math.exp(-1) * math.fsum(1 / math.factorial(j) for j in range(k + 1))


def test_the_weight_thresholds_are_the_poisson_1_cdf():
    # The macro inverts the CDF at hash / 2^64; its thresholds must be floor(P(X <= k) x 2^64).
    text = (REPO / "sql" / "roi_macros.sql").read_text(encoding="utf-8")
    thresholds = [int(line.split("<")[1].split("::")[0]) for line in text.splitlines()
                  if "WHEN h <" in line]
    assert len(thresholds) == 13
    for k, threshold in enumerate(thresholds):
        assert threshold / 2**64 == pytest.approx(poisson_cdf(k), abs=1e-15), k


def test_weights_are_independent_poisson_1_draws():
    # 4,000 deals x 50 draws = 200,000 weights. With n = 200,000 the standard error of the mean
    # (variance 1) is 0.0022 and of a frequency p at most 0.0011: 5 standard errors is a bound
    # a correct generator breaks once in ~2 million runs. Independence across draws and across
    # deals: a correlation's standard error is 1 / sqrt(n) = 0.0022.
    with duckdb.connect() as con:
        con.execute(sql_text("roi_macros"))
        con.execute("SET VARIABLE uncertainty_seed = 42")
        con.execute("""
            CREATE TEMP TABLE w AS
            SELECT deal, draw, poisson_weight(bootstrap_key('D-' || deal, TIMESTAMP '2025-01-01'), draw) AS weight
            FROM range(4000) AS d(deal), range(1, 51) AS r(draw)""")
        n, mean, variance = con.execute("SELECT count(*), avg(weight), var_pop(weight) FROM w").fetchone()
        frequencies = dict(con.execute("SELECT weight, count(*) / 200000 FROM w GROUP BY ALL").fetchall())
        across_draws = con.execute("""
            SELECT corr(a.weight, b.weight) FROM w AS a JOIN w AS b ON a.deal = b.deal AND b.draw = a.draw + 1
        """).fetchone()[0]
        across_deals = con.execute("""
            SELECT corr(a.weight, b.weight) FROM w AS a JOIN w AS b ON b.deal = a.deal + 1 AND a.draw = b.draw
        """).fetchone()[0]
    assert n == 200_000
    assert mean == pytest.approx(1, abs=5 * 0.0022)
    assert variance == pytest.approx(1, abs=5 * 0.0045)  # var of a sample variance: (mu4 - 1) / n = 3 / n
    for k in range(4):
        p = math.exp(-1) / math.factorial(k)
        assert frequencies[k] == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / n)), k
    assert abs(across_draws) < 5 * 0.0023 and abs(across_deals) < 5 * 0.0023


# -- the bootstrap -------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_percentiles(tmp_path_factory):
    def percentiles(seed: int) -> tuple:
        folder = tmp_path_factory.mktemp(f"seed{seed}")
        (folder / "exports").mkdir()
        write_csv(folder / "exports" / "deals.csv", [*DEAL_COLUMNS, "is_deleted", "segment"], DEALS)
        write_csv(folder / "finance_gl.csv", GL_COLUMNS, FINANCE)
        config = {"as_of": "2025-03-31", "go_live": "2025-01-01", "uncertainty": {"draws": 400, "seed": seed},
                  "counterfactual": {"method": "trend"},
                  "sources": [{"kind": "files", "path": "exports", "profile": "canonical"}],
                  "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS}}
        (folder / "crm_roi.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        con = run_pipeline(load_settings(folder / "crm_roi.yaml"))
        try:
            s = summary(con)
            draws = con.execute("SELECT count(*), count(roi) FROM roi.bootstrap").fetchone()
        finally:
            con.close()
        assert draws == (400, 400)
        return tuple(s[c] for c in ("incremental_revenue_p05", "incremental_revenue_p50", "incremental_revenue_p95",
                                    "roi_p05", "roi_p50", "roi_p95"))

    first, again, other = percentiles(7), percentiles(7), percentiles(8)
    assert first == again  # exactly: integer sums, whatever the threads did
    assert first != other
    assert first[0] < first[1] < first[2] and first[3] < first[4] < first[5]


def test_draws_0_turns_the_bootstrap_off(project):
    con = project(deals=DEALS, finance=FINANCE, uncertainty={"draws": 0})
    s = summary(con)
    assert con.execute("SELECT count(*) FROM roi.bootstrap").fetchone()[0] == 0
    assert all(s[c] is None for c in ("incremental_revenue_p05", "incremental_revenue_p50",
                                      "incremental_revenue_p95", "roi_p05", "roi_p50", "roi_p95"))
    assert s["roi"] is not None


def test_the_interval_surrounds_the_point_estimate(project):
    con = project(deals=DEALS, finance=FINANCE)
    s = summary(con)
    assert s["incremental_revenue_p05"] < s["incremental_revenue"] < s["incremental_revenue_p95"]
    assert s["roi_p05"] < s["roi"] < s["roi_p95"]
    assert con.execute("SELECT count(*) FROM roi.bootstrap").fetchone()[0] == 1000


# -- methods the configuration cannot support ------------------------------------------------------

@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "exports").mkdir()
    (tmp_path / "finance_gl.csv").write_text("entry_id,posted_on,account,description,vendor,amount,currency\n")
    return tmp_path


def config_error(folder: Path, **settings: object) -> str:
    config = {"go_live": "2025-01-01", "sources": [{"kind": "files", "path": "exports"}],
              "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS}, **settings}
    path = folder / "crm_roi.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


@pytest.mark.parametrize(("settings", "words"), [
    pytest.param({"counterfactual": {"method": "seasonal"}, "period": "week"},
                 ["counterfactual.method", "seasonal", "month or quarter"], id="seasonal-weeks"),
    pytest.param({"counterfactual": {"method": "seasonal"}, "baseline_months": 9},
                 ["counterfactual.method", "12 baseline months", "9 whole months"], id="seasonal-short-baseline"),
    # go-live mid-month: only 11 whole months fit in the 12 before it.
    pytest.param({"counterfactual": {"method": "seasonal"}, "go_live": "2025-01-15"},
                 ["counterfactual.method", "11 whole months"], id="seasonal-mid-month-go-live"),
    pytest.param({"counterfactual": {"method": "trend"}, "baseline_months": 2},
                 ["counterfactual.method", "trend", "3 baseline periods", "holds 2"], id="trend-two-periods"),
    pytest.param({"counterfactual": {"method": "control"}},
                 ["counterfactual", "control needs control", "values"], id="control-without-a-group"),
    pytest.param({"counterfactual": {"method": "control", "control": {"column": "region", "values": ["APAC"]}}},
                 ["counterfactual.control.column", "segment", "pipeline", "owner_id"], id="control-unknown-column"),
    pytest.param({"counterfactual": {"method": "control", "control": {"values": []}}},
                 ["counterfactual.control.values", "at least 1"], id="control-no-values"),
    pytest.param({"counterfactual": {"method": "arima"}}, ["counterfactual.method", "flat", "trend"],
                 id="unknown-method"),
    pytest.param({"uncertainty": {"draws": -1}}, ["uncertainty.draws"], id="negative-draws"),
])
def test_a_method_the_configuration_cannot_support_is_one_line_naming_the_key(config_dir, settings, words):
    message = config_error(config_dir, **settings)
    for word in words:
        assert word in message, message


# -- methods the data cannot support ----------------------------------------------------------------

def run_cli(folder: Path, deals: list[dict], **settings: object):
    write_csv(folder / "exports" / "deals.csv", [*DEAL_COLUMNS, "is_deleted", "segment"], deals)
    write_csv(folder / "finance_gl.csv", GL_COLUMNS, FINANCE)
    config = {"as_of": "2025-03-31", "go_live": "2025-01-01",
              "sources": [{"kind": "files", "path": "exports", "profile": "canonical"}],
              "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS}, **settings}
    (folder / "crm_roi.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return crm_roi("run", "--config", "crm_roi.yaml", cwd=folder)


WITHOUT_MARCH_2024 = [d for d in DEALS if not d["closed_at"].startswith("2024-03")]


@pytest.mark.parametrize(("deals", "settings", "words"), [
    pytest.param(WITHOUT_MARCH_2024, {"counterfactual": {"method": "trend"}},
                 ["counterfactual.method", "trend", "ln revenue", "2024-03-01 has none"], id="trend-unsold-month"),
    pytest.param(DEALS, {"counterfactual": {"method": "control", "control": {"values": ["APAC"]}}},
                 ["counterfactual.control", "no deal has segment in [APAC]", "control group is empty"],
                 id="control-empty"),
    pytest.param([{**d, "segment": "APAC"} for d in DEALS],
                 {"counterfactual": {"method": "control", "control": {"values": ["APAC"]}}},
                 ["counterfactual.control", "every deal", "no deal is treated"], id="treated-empty"),
    pytest.param([{**d, "segment": "APAC" if d["closed_at"] >= "2025" else "EMEA"} for d in DEALS],
                 {"counterfactual": {"method": "control", "control": {"values": ["APAC"]}}},
                 ["counterfactual.control", "no revenue in the baseline window"], id="control-unsold-baseline"),
])
def test_a_method_the_data_cannot_support_fails_the_run_with_one_line(tmp_path, deals, settings, words):
    (tmp_path / "exports").mkdir()
    done = run_cli(tmp_path, deals, **settings)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: counterfactual."), line
    for word in words:
        assert word in line, line
    # Nothing was published: the analysts' copy is not half-built.
    assert not (tmp_path / "crm_roi.published.duckdb").exists()


def test_an_unsupported_alternative_is_left_out_of_the_sensitivity_not_an_error(project):
    # trend cannot fit a baseline month without revenue, but it is not the configured method.
    con = project(deals=WITHOUT_MARCH_2024, finance=FINANCE)
    methods = {r["setting"] for r in rows(
        con, "SELECT setting FROM roi.sensitivity WHERE assumption = 'counterfactual'")}
    assert methods == {"flat", "seasonal"}
    assert con.execute("SELECT count(*) FROM roi.counterfactual WHERE method = 'trend'").fetchone()[0] == 0
