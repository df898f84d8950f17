"""Cross-check: the counterfactual, bootstrap, sensitivity and TEI tables against the reference model.

tests/reference_model.py implements the formulas of docs/roi-methods.md in plain Python: its trend
solves the normal equations with effect-coded seasonal dummies (the SQL uses within-season
sums), its sensitivity values every benefit again (the SQL rescales roi.rolling's totals), its
seasonal method finds the same month by calendar arithmetic (the SQL by period numbers). Both
run on the demo data under each method and on the random data sets of
tests/test_crosscheck_reference.py, and agree cell by cell.

The bootstrap is compared draw by draw with the same per-deal weights: the test reads the
weights from DuckDB's `poisson_weight` macro (their distribution is tested in
tests/test_uncertainty_and_method_errors.py) and hands them to the reference, which does the
rest in Python. The SQL sums amounts in millionths, so a draw's incremental revenue may differ
by half a millionth per unit of weight (under 1e-2 for these data sets): draws and percentiles
are compared to 1e-6 relative, 1e-2 absolute.
"""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import load_settings
from pipelines.sql_files import sql_text
from pipelines.transform import UnsupportedByData
from tests.conftest import ACCOUNTS, DEAL_COLUMNS, GL_COLUMNS, rows, run_pipeline, write_csv
from tests.reference_model import (
    BOOTSTRAP_COLUMNS,
    COUNTERFACTUAL_COLUMNS,
    ROLLING_COLUMNS,
    SENSITIVITY_COLUMNS,
    SUMMARY_INTERVAL_COLUMNS,
    SUMMARY_METHOD_COLUMNS,
    TEI_COLUMNS,
    UnsupportedMethod,
    compute,
)
from tests.test_counterfactual_recovery import generate
from tests.test_crosscheck_reference import MONEY, VARIANTS, _demo_config, _diff_table, _Generator, _write_dataset

DRAWS = 40


def _keyed(table: list[dict], *columns: str) -> list[dict]:
    return [{**row, "key": "|".join(str(row[c]) for c in columns)} for row in table]


def _close(actual: Any, expected: Any) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    return actual == pytest.approx(expected, rel=1e-6, abs=1e-2)


def _weights(con, draws: int, seed: int) -> dict[tuple[str, int], int]:
    """Every deal's Poisson weight in every draw, from the macro the SQL bootstrap uses."""
    con.execute(sql_text("roi_macros"))
    con.execute("SET VARIABLE uncertainty_seed = $seed", {"seed": seed})
    return {(deal_id, draw): weight for deal_id, draw, weight in con.execute(
        "SELECT deal_id, draw, poisson_weight(bootstrap_key(deal_id, created_at), draw) FROM staging.deals, "
        "range(1, $draws + 1) AS r(draw)", {"draws": draws}).fetchall()}


def _diff(con, ref: dict) -> list[str]:
    """Every differing cell of the tables this work added."""
    problems: list[str] = []
    sql = {name: rows(con, f"SELECT * FROM {name}") for name in (
        "roi.counterfactual", "roi.rolling", "roi.sensitivity", "roi.tei", "roi.summary", "roi.bootstrap")}
    problems += _diff_table("roi.counterfactual", _keyed(sql["roi.counterfactual"], "method", "period_start"),
                            _keyed(ref["roi_counterfactual"], "method", "period_start"), COUNTERFACTUAL_COLUMNS, "key")
    problems += _diff_table("roi.rolling", sql["roi.rolling"], ref["roi_rolling"], ROLLING_COLUMNS, "period_start")
    problems += _diff_table("roi.sensitivity", _keyed(sql["roi.sensitivity"], "assumption", "setting"),
                            _keyed(ref["roi_sensitivity"], "assumption", "setting"), SENSITIVITY_COLUMNS, "key")
    problems += _diff_table("roi.tei", sql["roi.tei"], ref["roi_tei"], TEI_COLUMNS, "year")
    problems += _diff_table("roi.summary", sql["roi.summary"], ref["roi_summary"], SUMMARY_METHOD_COLUMNS, None)
    # The bootstrap, to the millionths the SQL sums in.
    (summary,) = sql["roi.summary"]
    (ref_summary,) = ref["roi_summary"]
    for column in SUMMARY_INTERVAL_COLUMNS:
        if not _close(summary[column], ref_summary[column]):
            problems.append(f"roi.summary.{column}: sql={summary[column]!r} ref={ref_summary[column]!r}")
    by_draw = {r["draw"]: r for r in ref["roi_bootstrap"]}
    if len(sql["roi.bootstrap"]) != len(by_draw):
        problems.append(f"roi.bootstrap: {len(sql['roi.bootstrap'])} SQL draws vs {len(by_draw)} reference draws")
    for row in sql["roi.bootstrap"]:
        for column in BOOTSTRAP_COLUMNS[1:]:
            if not _close(row[column], by_draw.get(row["draw"], {}).get(column)):
                problems.append(f"roi.bootstrap[{row['draw']}].{column}: sql={row[column]!r} "
                                f"ref={by_draw.get(row['draw'], {}).get(column)!r}")
    return problems


def _check(settings_file: Path, folder: Path, finance: Path, reference_settings: dict) -> list[str]:
    """Run both; an unsupported method must be unsupported on both sides."""
    settings = load_settings(settings_file)
    try:
        con = run_pipeline(settings)
    except UnsupportedByData:
        with pytest.raises(UnsupportedMethod):
            compute(folder, finance, reference_settings)
        return []
    try:
        weights = _weights(con, DRAWS, settings.uncertainty.seed)
        ref = compute(folder, finance, reference_settings, weights=lambda deal, draw: weights[(deal, draw)])
        # The comparison covers something: the configured method's periods and every draw.
        assert any(r["method"] == settings.counterfactual.method for r in ref["roi_counterfactual"])
        assert len(ref["roi_bootstrap"]) == DRAWS
        return _diff(con, ref)
    finally:
        con.close()


def _check_exports(tmp_path: Path, **settings: Any) -> list[str]:
    """_check on tmp_path/exports and tmp_path/finance_gl.csv under `settings`."""
    raw: dict[str, Any] = {
        **settings,
        "duckdb_path": str(tmp_path / "crm_roi.duckdb"),
        "sources": [{"kind": "files", "path": "exports", "profile": "canonical"}],
        "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS},
    }
    config = tmp_path / "crm_roi.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return _check(config, tmp_path / "exports", tmp_path / "finance_gl.csv", {**settings, "accounts": ACCOUNTS})


DEMO_METHODS = [
    {"method": "flat"},
    {"method": "seasonal"},
    {"method": "trend"},
    {"method": "control", "control": {"column": "segment", "values": ["APAC"]}},
    {"method": "flat", "normalise_by": "active_owners", "control": {"column": "segment", "values": ["EMEA"]}},
    {"method": "trend", "normalise_by": "active_owners"},
]


@pytest.mark.parametrize("counterfactual", DEMO_METHODS, ids=lambda c: "-".join(
    [c["method"], *(["per-owner"] if c.get("normalise_by") else [])]))
def test_demo_data_matches_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counterfactual: dict) -> None:
    monkeypatch.delenv("CRM_ROI_DUCKDB", raising=False)
    demo = _demo_config()
    raw = yaml.safe_load(demo.read_text(encoding="utf-8"))
    sample = demo.parent
    raw |= {"counterfactual": counterfactual, "uncertainty": {"draws": DRAWS, "seed": 3},
            "duckdb_path": str(tmp_path / "demo.duckdb"), "data_roots": [str(sample), str(tmp_path)],
            "sources": [{"kind": "files", "path": str(sample), "profile": "canonical"}],
            "finance": {**raw["finance"], "path": str(sample / "finance_gl.csv")}}
    config = tmp_path / "crm_roi.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    reference = {k: v for k, v in raw.items() if k not in ("sources", "finance", "duckdb_path", "data_roots")}
    reference["accounts"] = raw["finance"]["accounts"]
    problems = _check(config, sample, sample / "finance_gl.csv", reference)
    assert not problems, "\n".join(problems[:60])


# Random data: the variants of test_crosscheck_reference.py, each under a method (and sometimes per owner).
RANDOM_METHODS = [
    {"method": "trend"},
    {"method": "seasonal"},
    {"method": "control", "control": {"column": "pipeline", "values": ["expansion"]}},
    {"method": "flat", "normalise_by": "active_owners"},
    {"method": "control", "control": {"column": "owner_id", "values": ["U-1", "U-2"]},
     "normalise_by": "active_owners"},
    {"method": "trend", "normalise_by": "active_owners"},
]
CASES = [(200 + i, variant, RANDOM_METHODS[i % len(RANDOM_METHODS)]) for i, variant in enumerate(VARIANTS)]
# Months and weeks of these small data sets often have no won deal, which trend cannot fit (both
# sides then refuse it); quarters have some.
CASES += [
    (301, ("quarter", date(2025, 1, 1), date(2026, 3, 31), 12, "all_set"), {"method": "trend"}),
    (302, ("quarter", date(2025, 4, 1), date(2026, 5, 20), 12, "partial"),
     {"method": "trend", "normalise_by": "active_owners"}),
    (303, ("quarter", date(2025, 1, 1), date(2026, 9, 30), 9, "arpa_only"), {"method": "trend"}),
]


@pytest.mark.parametrize(("seed", "variant", "counterfactual"), CASES,
                         ids=[f"seed{s}-{v[0]}-b{v[3]}-{c['method']}" for s, v, c in CASES])
def test_random_data_matches_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int,
                                       variant: tuple, counterfactual: dict) -> None:
    monkeypatch.delenv("CRM_ROI_DUCKDB", raising=False)
    period, go_live, as_of, baseline_months, money = variant
    data = _Generator(seed, go_live, as_of).build(random.Random(seed).randint(150, 300))
    folder = tmp_path / "exports"
    _write_dataset(folder, data)
    settings: dict[str, Any] = {
        "as_of": as_of, "go_live": go_live, "baseline_months": baseline_months, "period": period,
        **MONEY[money], "counterfactual": counterfactual, "uncertainty": {"draws": DRAWS, "seed": seed},
        "tei": {"horizon_years": 2, "cost_risk_adjustment": 0.15},
    }
    if counterfactual["method"] == "seasonal" and period == "week":
        settings["counterfactual"] = {"method": "trend"}  # seasonal needs month or quarter periods
    if counterfactual["method"] == "seasonal" and baseline_months < 12:
        settings["baseline_months"] = 12
    problems = _check_exports(tmp_path, **settings)
    assert not problems, f"seed {seed}, {variant}, {counterfactual}:\n" + "\n".join(problems[:60])


# Two baseline years (the random data sets above hold one): seasonal's growth rate and trend's
# seasonal terms, on the generated market of tests/test_counterfactual_recovery.py.
TWO_YEARS = [(period, counterfactual) for period in ("month", "quarter") for counterfactual in (
    {"method": "seasonal"}, {"method": "trend"},
    {"method": "control", "control": {"column": "segment", "values": ["APAC"]}, "normalise_by": "active_owners"})]


@pytest.mark.parametrize(("period", "counterfactual"), TWO_YEARS,
                         ids=[f"{p}-{c['method']}" for p, c in TWO_YEARS])
def test_two_baseline_years_match_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, period: str,
                                            counterfactual: dict) -> None:
    monkeypatch.delenv("CRM_ROI_DUCKDB", raising=False)
    deals, _ = generate(seed=5, effect=0.1, segments={"EMEA": True, "APAC": False}, per_month=6)
    for i, deal in enumerate(deals):
        deal["owner_id"] = f"U-{i % 7}"
    folder = tmp_path / "exports"
    write_csv(folder / "deals.csv", [*DEAL_COLUMNS, "is_deleted", "segment"], deals)
    write_csv(tmp_path / "finance_gl.csv", GL_COLUMNS,
              [{"entry_id": f"C{m}", "posted_on": f"2025-{m:02d}-05", "account": "6100", "amount": "900",
                "currency": "USD"} for m in range(1, 13)])
    problems = _check_exports(tmp_path, as_of=date(2025, 11, 30), go_live=date(2025, 1, 1), baseline_months=24,
                              period=period, gross_margin=0.7, counterfactual=counterfactual,
                              uncertainty={"draws": DRAWS, "seed": 11})
    assert not problems, f"{period}, {counterfactual}:\n" + "\n".join(problems[:60])
