"""The Dagster code location: the asset graph, real runs (in-process and
multiprocess), blocking Pandera checks, the schedule, and the `dagster` CLI."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from pipelines.config import load_settings
from pipelines.definitions import build_defs

REPO = Path(__file__).resolve().parent.parent
STREAMS = ("deals", "deal_stage_history", "customers", "finance_gl", "fx_rates", "csat", "crm_usage")
EXPECTED_KEYS = {
    *(f"raw/{s}" for s in STREAMS),
    *(f"staging/{s}" for s in STREAMS),
    "staging/stage_map",
    "kpi/periodic", "kpi/baseline", "kpi/vs_baseline", "kpi/stage_durations", "kpi/periodic_by_segment",
    "kpi/data_quality", "roi/counterfactual", "roi/rolling",
    "roi/bootstrap", "roi/sensitivity", "roi/tei", "roi/summary", "roi/assumptions",
    "publish/analyst_copy", "publish/report",
}
OUTPUT_TABLES = ("kpi.periodic", "kpi.baseline", "kpi.vs_baseline", "kpi.stage_durations", "roi.counterfactual",
                 "roi.rolling", "roi.bootstrap", "roi.sensitivity", "roi.tei", "roi.summary")


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    """A copy of the demo exports with a config writing to tmp_path."""
    shutil.copytree(REPO / "data" / "sample", tmp_path / "sample")
    config = yaml.safe_load((tmp_path / "sample" / "crm_roi.yaml").read_text())
    config["duckdb_path"] = str(tmp_path / "warehouse.duckdb")
    config["data_roots"] = [str(tmp_path)]  # the warehouse sits beside the export folder, not in it
    config["schedule_cron"] = "30 3 * * *"
    path = tmp_path / "sample" / "crm_roi.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_asset_graph_is_complete_and_grouped_by_layer():
    defs = build_defs(load_settings(REPO / "crm_roi.yaml"))
    graph = defs.resolve_asset_graph()
    specs = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    assert set(specs) == EXPECTED_KEYS
    for key, node in specs.items():
        assert node.group_name == key.split("/")[0]
        assert node.description and (key.startswith("publish/") or key.replace("/", ".") in node.description)
        # Every writer of the DuckDB files takes the one slot; the report only reads the analysts' copy.
        assert node.pools == (set() if key == "publish/report" else {"duckdb"})
        assert node.owners == ["team:data"]
    kinds = {key: set(node.kinds) for key, node in specs.items()}
    assert all(kinds[k] == {"duckdb", "csv"} for k in EXPECTED_KEYS if k.startswith("raw/"))
    assert all(kinds[k] == {"duckdb", "pandera"} for k in EXPECTED_KEYS if k.startswith("staging/"))
    assert all(kinds[k] == {"duckdb"} for k in EXPECTED_KEYS if k.split("/")[0] in ("kpi", "roi"))
    assert kinds["publish/report"] == {"html", "report"}
    # Every staging table from raw carries blocking Pandera and rejected-share checks; KPI and ROI
    # tables blocking rules of their own; the stage map a warning.
    checks = {(c.asset_key.to_user_string(), c.name): graph.get_check_spec(c).blocking for c in graph.asset_check_keys}
    for stream in STREAMS:
        assert checks[(f"staging/{stream}", "pandera_schema")] and checks[(f"staging/{stream}", "rejected_share")]
    assert checks[("kpi/periodic", "rates_within_0_and_1")]
    assert checks[("roi/rolling", "cumulative_columns_are_running_sums")]
    assert checks[("roi/summary", "summary_is_the_last_complete_period")]
    assert checks[("staging/stage_map", "stages_accounted_for")] is False
    # A missed night shows in the UI: KPI, ROI and the analysts' copy carry a freshness policy.
    fresh = {k for k, node in specs.items() if node.freshness_policy is not None}
    assert fresh == {k for k in EXPECTED_KEYS if k.split("/")[0] in ("kpi", "roi", "publish")}
    assert [s.name for s in defs.sensors] == ["nightly_failure_alert"]
    # Each table waits for exactly the tables its SQL reads; the analysts' copy for every KPI and ROI table.
    def parents(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key.split("/"))).parent_keys}
    assert parents("kpi/periodic") == {"staging/deals", "staging/customers", "staging/finance_gl",
                                       "staging/csat", "staging/crm_usage", "raw/customers"}
    assert parents("staging/deals") == {"raw/deals", "staging/fx_rates"}
    # The quarantine is written by every staging step.
    assert parents("kpi/data_quality") == {f"staging/{s}" for s in STREAMS}
    assert parents("roi/summary") == {"roi/rolling", "kpi/periodic", "roi/bootstrap", "roi/counterfactual", "roi/tei"}
    assert parents("roi/rolling") == {"kpi/periodic", "kpi/baseline", "roi/counterfactual", "staging/finance_gl"}
    assert parents("publish/analyst_copy") == {
        "staging/stage_map", *(k for k in EXPECTED_KEYS if k.split("/")[0] in ("kpi", "roi"))}
    # The report is made from the analysts' copy, last.
    assert parents("publish/report") == {"publish/analyst_copy"}
    assert not graph.get(dg.AssetKey(["publish", "report"])).child_keys


def test_schedule_uses_the_configured_cron(demo_config: Path):
    defs = build_defs(load_settings(demo_config))
    schedule = defs.resolve_schedule_def("nightly_schedule")
    assert schedule.cron_schedule == "30 3 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "nightly"
    with dg.build_schedule_context() as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert len(requests) == 1
    # The full_sync_schedule exists only where it is configured (with a live CRM: tests/test_pipedrive_connector.py).
    assert [s.name for s in defs.schedules] == ["nightly_schedule"]


def test_nightly_job_materializes_every_table(demo_config: Path):
    defs = build_defs(load_settings(demo_config))
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("nightly").execute_in_process(instance=instance)
    assert result.success
    # Structured logs: one JSON event per load and staging step, with the figures on-call needs.
    events = [json.loads(e.user_message) for e in instance.all_logs(result.run_id)
              if e.user_message.startswith('{"')]
    staged = {e["table"]: e for e in events if e["event"] == "staged"}
    assert staged["deals"]["quarantined"] == 7 and staged["deals"]["rows_out"] > 5000
    assert {e["stream"] for e in events if e["event"] == "files_loaded"} >= {"deals", "finance_gl"}
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()
                    for m in [m.materialization]}
    assert materialized == EXPECTED_KEYS
    checks = result.get_asset_check_evaluations()
    assert {c.asset_key.to_user_string() for c in checks} == {
        *(k for k in EXPECTED_KEYS if k.startswith("staging/")), "kpi/periodic", "roi/rolling", "roi/summary"}
    assert all(c.passed for c in checks if c.severity == dg.AssetCheckSeverity.ERROR)
    summary = result.asset_materializations_for_node("roi__summary")[0].metadata
    assert "roi" in summary and "| as_of" in summary["preview"].value
    # The report, last: its main charts inline for the UI, and where its page is.
    report = result.asset_materializations_for_node("publish__report")[0].metadata
    assert report["charts"].value.count("](data:image/svg+xml;base64,") == 3
    page = Path(report["html"].value)
    assert page == demo_config.parent.parent / "warehouse_report" / "roi_report.html" and page.is_file()
    assert set(report["pngs"].value) == {"payback", "roi", "revenue", "benefits_costs", "kpis", "sales_cycle",
                                         "sensitivity", "tei", "data_quality"}
    assert all(Path(p).is_file() for p in report["pngs"].value.values())
    staged = result.asset_materializations_for_node("staging__deals")[0].metadata
    assert staged["quarantined_rows"].value > 0
    with duckdb.connect(str(demo_config.parent.parent / "warehouse.duckdb"), read_only=True) as con:
        for table in OUTPUT_TABLES:
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table


def test_blocking_check_stops_kpis_from_building_on_a_broken_table(demo_config: Path):
    # 'EURO' is not an ISO currency code: the row rules let it through (the value
    # is present), the Pandera contract for staging.fx_rates does not.
    with (demo_config.parent / "fx_rates.csv").open("a") as handle:
        handle.write("2025-01-01,EURO,1.1\n")
    defs = build_defs(load_settings(demo_config))
    result = defs.resolve_job_def("nightly").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [c.asset_key.to_user_string() for c in failed] == ["staging/fx_rates"]
    assert failed[0].metadata["failing_rows"].value == 1
    materialized = {m.materialization.asset_key.to_user_string()
                    for m in result.get_asset_materialization_events()}
    assert "staging/deals" not in materialized and "kpi/periodic" not in materialized


def writers_in_parallel_branches() -> dg.JobDefinition:
    """Three independent raw -> staging branches, which a multiprocess executor would run side
    by side; module-level so each step process can rebuild the job."""
    branches = [dg.AssetKey(["staging", t]) for t in ("fx_rates", "csat", "crm_usage")]
    defs = build_defs(load_settings(os.environ["CRM_ROI_CONFIG"]))
    return dg.Definitions(
        assets=defs.assets,
        resources=defs.resources,
        jobs=[dg.define_asset_job(
            "parallel_writers",
            selection=dg.AssetSelection.assets(*branches).upstream(),
            executor_def=dg.multiprocess_executor.configured({
                "max_concurrent": 4,
                "start_method": {"forkserver": {"preload_modules": ["pipelines.definitions"]}},
            }),
        )],
    ).resolve_job_def("parallel_writers")


@pytest.mark.slow
def test_multiprocess_run_never_overlaps_duckdb_writers(demo_config: Path, tmp_path: Path, monkeypatch):
    """With dagster.yaml's pool limit, steps in separate processes take the DuckDB file in turn."""
    monkeypatch.setenv("CRM_ROI_CONFIG", str(demo_config))
    monkeypatch.setenv("CRM_ROI_LOCK_WAIT_SECONDS", "0")  # a lock conflict would fail at once
    overrides = yaml.safe_load((REPO / "dagster.yaml").read_text())
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path / "dagster_home")) as instance:
        result = dg.execute_job(dg.reconstructable(writers_in_parallel_branches), instance=instance)
        assert result.success
        events = instance.all_logs(result.run_id)
    spans: dict[str, list[float]] = {}
    for event in events:
        if event.dagster_event and event.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
            spans.setdefault(event.step_key, []).append(event.timestamp)
    intervals = sorted((s[0], s[1]) for s in spans.values())
    assert len(intervals) == 6
    for (_, end), (next_start, _) in itertools.pairwise(intervals):
        assert next_start >= end, "two DuckDB writers ran at the same time"


@pytest.mark.slow
def test_dagster_cli_executes_the_nightly_job(demo_config: Path, tmp_path: Path):
    env = {**os.environ, "CRM_ROI_CONFIG": str(demo_config), "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    shutil.copy(REPO / "dagster.yaml", tmp_path / "home" / "dagster.yaml")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "job", "execute",
         "-m", "pipelines.definitions", "-j", "nightly"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM roi.summary").fetchone()[0] == 1


@pytest.mark.slow
def test_a_broken_config_fails_the_code_location_load_with_its_one_line_error(tmp_path: Path):
    """The graph is never built from a config that does not validate: Dagster shows the error (the UI
    shows the same load error) instead of a code location with the API assets silently missing."""
    broken = tmp_path / "crm_roi.yaml"
    broken.write_text("go_live: 2025-01-01\nsources: []\n"
                      "finance: {path: gl.csv, accounts: {'6100': crm_software}}\n")
    env = {**os.environ, "CRM_ROI_CONFIG": str(broken)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m", "pipelines.definitions"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1
    assert (f"pipelines.config.ConfigError: {broken}: sources: List should have at least 1 item"
            in done.stdout + done.stderr)
