"""The registry is the one declaration of every table: the SQL, the warehouse and the docs agree with it."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines import models
from pipelines.models import KPIS, REGISTRY, Kpi, RegistryError, check_registry
from pipelines.sql_files import parse_model, sql_text
from tests.conftest import deal, gl, rows


def test_every_table_has_the_columns_the_registry_declares(project):
    con = project(deals=[deal("D1", "2025-01-05", "2025-01-20", won=True)],
                  finance=[gl("G1", "2025-01-10", "6100", "100")])
    for table in REGISTRY.tables:
        if table.schema == "history":  # kept in the analysts' copy only: tests/test_history.py
            continue
        actual = [r["column_name"] for r in rows(
            con, "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                 "ORDER BY ordinal_position", [table.schema, table.short_name])]
        assert actual == list(table.columns), table.name
        assert all(table.columns.values()), table.name


def _with_kpi(kpi: Kpi, *tables: str) -> object:
    """The registry as if `kpi` had been declared, and its columns added to `tables`' entries."""
    def widen(table):
        if table.name not in tables:
            return table
        return dataclasses.replace(table, columns={**table.columns, kpi.name: kpi.meaning})
    return dataclasses.replace(REGISTRY, marts=tuple(widen(t) for t in REGISTRY.marts))


def test_a_kpi_without_a_baseline_rule_is_an_error_at_load():
    kpi = Kpi("pipeline_coverage", "Open pipeline / quota.", "mean")
    with pytest.raises(RegistryError, match=r"baseline\.sql does not select pipeline_coverage.*baseline rule"):
        check_registry(_with_kpi(kpi, "kpi.baseline"))


def test_a_column_the_sql_selects_but_the_registry_lacks_is_an_error_at_load():
    without = dataclasses.replace(REGISTRY, marts=tuple(
        dataclasses.replace(t, columns={c: m for c, m in t.columns.items() if c != "crm_cost"})
        if t.name == "kpi.periodic" else t for t in REGISTRY.marts))
    with pytest.raises(RegistryError, match=r"periodic\.sql selects crm_cost, which kpi\.periodic does not declare"):
        check_registry(without)


def test_upstream_tables_are_read_from_the_sql():
    assert REGISTRY.table("staging.deals").reads == {"raw.deals", "staging.fx_rates"}
    assert REGISTRY.table("kpi.vs_baseline").reads == {"kpi.periodic", "kpi.baseline"}
    assert REGISTRY.table("staging.finance_gl").variables == {"accounts", "base_currency"}
    assert REGISTRY.table("staging.customers").reads == {"raw.customers", "staging.deals"}  # won deals
    names = [t.name for t in REGISTRY.staging]
    assert names.index("staging.fx_rates") < names.index("staging.deals") < names.index("staging.customers")


def test_kpis_are_declared_once_with_a_baseline_rule():
    periodic = REGISTRY.table("kpi.periodic").columns
    baseline = REGISTRY.table("kpi.baseline").columns
    for kpi in KPIS:
        assert periodic[kpi.name] == kpi.meaning
        assert baseline[kpi.name].startswith(kpi.meaning) and "Baseline:" in baseline[kpi.name]


def test_the_generated_reference_is_up_to_date(tmp_path):
    from pipelines.reference import DOCS, write

    for generated in write(tmp_path):
        committed = DOCS / generated.name
        assert committed.read_text(encoding="utf-8") == generated.read_text(encoding="utf-8"), (
            f"docs/{generated.name} is stale: run `make docs`")


def test_a_keyed_model_that_does_not_read_raw_through_the_scope_macros_is_an_error_at_load(monkeypatch):
    unscoped = sql_text("staging/deals").replace("WHERE in_scope(deal_id, _batch_id)", "").replace(
        "WHERE NOT scoped_build()", "")
    monkeypatch.setattr(models, "model_shape", lambda name: parse_model(
        name, unscoped if name == "staging/deals" else sql_text(name)))
    with pytest.raises(RegistryError, match=r"deals\.sql must read raw through in_scope\(\) and scoped_build\(\)"):
        check_registry(REGISTRY)
