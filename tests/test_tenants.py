"""Many tenants in one code location: the tenants file, the partitioned graph, the schedule and
sensor, runs that keep each tenant's rows in its own files, and a connection that cannot reach
another tenant's file."""

from __future__ import annotations

import csv
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from filelock import FileLock

from connectors.fakes.hubspot import FakeHubSpot
from pipelines import tenants as tenants_module
from pipelines.config import ConfigError
from pipelines.definitions import NIGHTLY_TAG, build_tenant_defs
from pipelines.resources import CrmRoi
from pipelines.tenants import TENANT_PARTITIONS, Tenants, read_tenants
from pipelines.warehouse import WarehouseLocked
from tests.conftest import crm_roi, tenant_deals, tenant_finance, write_tenant


@pytest.fixture
def two_tenants(tmp_path: Path) -> Tenants:
    """acme (40 deals, ids A-*) and globex (25 deals, ids G-*), each in its own folder."""
    write_tenant(tmp_path, "acme", tenant_deals("A", 40), tenant_finance("A"))
    write_tenant(tmp_path, "globex", tenant_deals("G", 25), tenant_finance("G", scale=3))
    file = tmp_path / "tenants.yaml"
    file.write_text(yaml.safe_dump({"schedule_cron": "15 1 * * *",
                                    "tenants": {"acme": "acme/crm_roi.yaml", "globex": "globex/crm_roi.yaml"}}))
    return read_tenants(file)


def deal_ids(folder: Path) -> set[str]:
    """The deal ids of a tenant's export, read with the csv module (not DuckDB)."""
    with (folder / "exports" / "deals.csv").open(newline="") as handle:
        return {row["deal_id"] for row in csv.DictReader(handle)}


def test_a_tenants_file_or_folder_names_each_tenants_config(tmp_path: Path, two_tenants: Tenants):
    assert two_tenants.configs == {"acme": tmp_path / "acme" / "crm_roi.yaml",
                                   "globex": tmp_path / "globex" / "crm_roi.yaml"}
    assert two_tenants.schedule_cron == "15 1 * * *"
    assert two_tenants.settings("globex").duckdb_path == tmp_path / "globex" / "crm_roi.duckdb"
    # A folder of configs: each file a tenant, named by the file.
    folder = tmp_path / "configs"
    folder.mkdir()
    for name in ("beta", "alpha"):
        (folder / f"{name}.yaml").write_text((tmp_path / "acme" / "crm_roi.yaml").read_text())
    (folder / "notes.txt").write_text("not a config")
    assert list(read_tenants(folder).configs) == ["alpha", "beta"]


def test_the_duckdb_override_does_not_point_every_tenant_at_one_file(two_tenants: Tenants, tmp_path: Path,
                                                                     monkeypatch):
    monkeypatch.setenv("CRM_ROI_DUCKDB", str(tmp_path / "one.duckdb"))
    assert two_tenants.settings("acme").duckdb_path == tmp_path / "acme" / "crm_roi.duckdb"


@pytest.mark.parametrize(("content", "message"), [
    ({"tenants": {"Acme Corp": "a.yaml"}}, "tenant name 'Acme Corp' must be lower-case letters"),
    ({"tenant": {"acme": "a.yaml"}}, "tenants.yaml: tenant: unknown key"),
    ({"tenants": {"acme": "a.yaml"}, "schedule_cron": "daily"}, "schedule_cron: 'daily' is not a five-field cron"),
])
def test_a_bad_tenants_file_is_one_line_naming_the_key(tmp_path: Path, content: dict, message: str):
    file = tmp_path / "tenants.yaml"
    file.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError, match=message):
        read_tenants(file)
    with pytest.raises(ConfigError, match=r"tenants file '.*missing.yaml' not found .*CRM_ROI_TENANTS"):
        read_tenants(tmp_path / "missing.yaml")


def test_an_unknown_tenant_is_one_line_naming_the_tenants(two_tenants: Tenants):
    with pytest.raises(ConfigError, match="no tenant 'initech' \\(tenants: acme, globex\\)"):
        two_tenants.settings("initech")


def test_every_asset_is_partitioned_by_tenant_and_the_schedule_runs_each(two_tenants: Tenants):
    defs = build_tenant_defs(two_tenants)
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert all(graph.get(key).partitions_def == TENANT_PARTITIONS for key in keys)
    # The graph is every tenant's: one asset per stream of every CRM kind, whatever the tenants use.
    api = {k.to_user_string() for k in keys if k.to_user_string().startswith("raw/") and "_" in k.path[1]
           and k.path[1].split("_")[0] in ("hubspot", "salesforce", "pipedrive")}
    assert api == {"raw/hubspot_deals", "raw/hubspot_companies", "raw/salesforce_opportunities",
                   "raw/salesforce_accounts", "raw/pipedrive_deals", "raw/pipedrive_organizations"}
    assert {k.to_user_string() for k in graph.get(dg.AssetKey(["staging", "customers"])).parent_keys} >= {
        "raw/hubspot_companies", "raw/salesforce_accounts", "raw/pipedrive_organizations"}
    schedule = defs.resolve_schedule_def("nightly_schedule")
    assert schedule.cron_schedule == "15 1 * * *"
    with dg.instance_for_test() as instance:
        # The sensor adds the file's tenants as partitions, then the schedule asks for a run of each.
        sensor = defs.resolve_sensor_def("tenants_sensor")
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        [request] = result.dynamic_partitions_requests
        assert sorted(request.partition_keys) == ["acme", "globex"]
        instance.add_dynamic_partitions(TENANT_PARTITIONS.name, list(request.partition_keys))
        with dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def()) as context:
            runs = schedule.evaluate_tick(context).run_requests
        assert [(r.partition_key, r.tags[NIGHTLY_TAG]) for r in runs] == [("acme", "nightly"), ("globex", "nightly")]
        # A tenant removed from the file loses its partition.
        instance.add_dynamic_partitions(TENANT_PARTITIONS.name, ["initech"])
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        [request] = result.dynamic_partitions_requests
        assert isinstance(request, dg.DeleteDynamicPartitionsRequest) and list(request.partition_keys) == ["initech"]


def test_each_tenants_run_writes_its_own_files_only(two_tenants: Tenants, tmp_path: Path):
    defs = build_tenant_defs(two_tenants)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(TENANT_PARTITIONS.name, ["acme", "globex"])
    job = defs.resolve_job_def("nightly")
    for tenant in ("acme", "globex"):
        result = job.execute_in_process(instance=instance, partition_key=tenant)
        assert result.success
        # The report's page, but not its charts inline: they would double each run's event log.
        report = result.asset_materializations_for_node("publish__report")[0].metadata
        assert "charts" not in report and Path(report["html"].value).is_file()
    assert instance.get_materialized_partitions(dg.AssetKey(["roi", "summary"])) == {"acme", "globex"}
    for tenant, other in (("acme", "globex"), ("globex", "acme")):
        published = tmp_path / tenant / "crm_roi.published.duckdb"
        with duckdb.connect(str(published), read_only=True) as con:
            ids = {row[0] for row in con.execute("SELECT deal_id FROM staging.deals").fetchall()}
            ledger = {row[0] for row in con.execute("SELECT entry_id FROM staging.finance_gl").fetchall()}
        assert ids == deal_ids(tmp_path / tenant)  # every deal of its own export, none of the other's
        assert not ids & deal_ids(tmp_path / other)
        assert ledger == {f"{tenant[0].upper()}-gl-{n}" for n in (1, 2, 3)}
        assert (tmp_path / tenant / "crm_roi_report" / "roi_report.html").is_file()
    # Each run's roi.summary counts its own tenant's CRM costs: software and implementation (account 6200
    # is sales cost, not CRM cost), 1,200 + 800 at acme and three times that at globex.
    for tenant, cost in (("acme", 1200 + 800), ("globex", 3 * (1200 + 800))):
        with duckdb.connect(str(tmp_path / tenant / "crm_roi.published.duckdb"), read_only=True) as con:
            assert con.execute("SELECT cumulative_cost FROM roi.summary").fetchone()[0] == pytest.approx(cost)


def test_a_tenants_crm_syncs_through_the_shared_graph_and_a_broken_tenant_fails_alone(tmp_path: Path, monkeypatch):
    """globex's deals come from its HubSpot; initech's token variable is unset; acme has only files."""
    token = "globex-token"  # a test value; its variable is what the config names
    monkeypatch.setenv("GLOBEX_HUBSPOT_TOKEN", token)
    monkeypatch.delenv("INITECH_HUBSPOT_TOKEN", raising=False)
    fake = FakeHubSpot(token)
    company = fake.create_company("Globex", lifecycle="customer", created="2024-06-01T09:00:00Z",
                                  customer_since="2024-07-01T09:00:00Z")
    for n in range(12):  # 12 deals, a third of them won in 2025, the others open
        won = n % 3 == 0
        fake.create_deal(f"Deal {n}", stage="closedwon" if won else "qualifiedtobuy", amount=f"{2000 + n}",
                         currency="USD", company_ids=[company], owner_id="7",
                         created=f"2024-{n % 9 + 1:02d}-03T10:00:00Z",
                         closed=f"2025-0{n % 5 + 1}-20T10:00:00Z" if won else None)
    write_tenant(tmp_path, "acme", tenant_deals("A", 10), tenant_finance("A"))
    with fake.running():
        for name in ("globex", "initech"):
            source = {"kind": "hubspot", "token": f"env:{name.upper()}_HUBSPOT_TOKEN", "base_url": fake.base_url}
            write_tenant(tmp_path, name, [], tenant_finance(name[0].upper()), sources=[source])
        tenants = Tenants(tmp_path, {name: tmp_path / name / "crm_roi.yaml" for name in ("acme", "globex", "initech")})
        job = build_tenant_defs(tenants).resolve_job_def("nightly")  # loads with initech's config broken
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(TENANT_PARTITIONS.name, list(tenants.configs))
        results = {name: job.execute_in_process(instance=instance, partition_key=name, raise_on_error=False)
                   for name in tenants.configs}
    assert results["acme"].success and results["globex"].success and not results["initech"].success
    failure = next(e for e in results["initech"].all_events if e.is_failure)
    assert "environment variable INITECH_HUBSPOT_TOKEN is not set" in failure.message + str(
        failure.event_specific_data.error)
    synced = {name: results[name].asset_materializations_for_node("raw__hubspot_deals")[0].metadata
              for name in ("acme", "globex")}
    # 12 deals and their 12 stage entries (one each), into raw.deals and raw.deal_stage_history.
    assert synced["globex"]["sources"].value == ["hubspot_1"] and synced["globex"]["records_new"].value == 24
    assert synced["acme"]["sources"].value == [] and synced["acme"]["records_new"].value == 0
    with duckdb.connect(str(tmp_path / "globex" / "crm_roi.raw.duckdb"), read_only=True) as con:
        assert con.execute("SELECT (SELECT count(*) FROM deals), (SELECT count(*) FROM deal_stage_history)"
                           ).fetchone() == (12, 12)
    with duckdb.connect(str(tmp_path / "globex" / "crm_roi.published.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*), count(*) FILTER (WHERE is_won) FROM staging.deals").fetchone() == (12, 4)


def test_a_tenants_connection_cannot_read_or_write_another_tenants_file(two_tenants: Tenants, tmp_path: Path):
    acme, globex = two_tenants.settings("acme"), two_tenants.settings("globex")
    with duckdb.connect(str(globex.duckdb_path)) as other:
        other.execute("CREATE TABLE secrets AS SELECT 'globex only' AS value")
    with CrmRoi(acme, "acme").warehouse() as con:
        # Its own exports read as before.
        own = con.execute("SELECT count(*) FROM read_csv($p)", {"p": str(tmp_path / "acme" / "exports" / "deals.csv")})
        assert own.fetchone()[0] == 40
        attempts = [
            ("ATTACH $p AS other (READ_ONLY)", str(globex.duckdb_path)),
            ("SELECT * FROM read_csv($p)", str(tmp_path / "globex" / "exports" / "deals.csv")),
            ("SELECT * FROM read_text($p)", str(globex.duckdb_path)),
            ("SELECT * FROM read_csv($p)", str(tmp_path / "acme" / ".." / "globex" / "finance_gl.csv")),
            ("COPY (SELECT 1) TO $p", str(tmp_path / "globex" / "planted.csv")),
        ]
        for sql, path in attempts:
            with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
                con.execute(sql, {"p": path})
        for sql in ("SET enable_external_access = true", "SET allowed_directories = ['/']"):
            with pytest.raises(duckdb.InvalidInputException):
                con.execute(sql)
    assert not (tmp_path / "globex" / "planted.csv").exists()


def test_two_tenants_naming_one_duckdb_file_are_refused(tmp_path: Path):
    write_tenant(tmp_path, "acme", tenant_deals("A", 10), tenant_finance("A"))
    shared = str(tmp_path / "acme" / "crm_roi.duckdb")
    write_tenant(tmp_path, "globex", tenant_deals("G", 10), tenant_finance("G"), duckdb_path=shared,
                 data_roots=[str(tmp_path)])
    tenants = Tenants(tmp_path, {"acme": tmp_path / "acme" / "crm_roi.yaml",
                                 "globex": tmp_path / "globex" / "crm_roi.yaml"})
    with CrmRoi(tenants.settings("acme"), "acme").warehouse():
        pass
    with pytest.raises(ConfigError, match=f"tenant globex: duckdb_path {shared} holds tenant acme's tables"), \
            CrmRoi(tenants.settings("globex"), "globex").warehouse():
        pass


def test_a_second_run_of_the_same_tenant_waits_then_fails_with_one_line(two_tenants: Tenants, monkeypatch):
    monkeypatch.setattr(tenants_module, "LOCK_WAIT_SECONDS", 0.5)
    settings = two_tenants.settings("acme")
    with FileLock(settings.duckdb_path.with_suffix(".run.lock")), \
            pytest.raises(WarehouseLocked, match=r"tenant acme: another run holds .* one run per tenant"), \
            tenants_module.run_lock("acme", settings):
        pass
    # Another tenant's run is not held up by it.
    with FileLock(settings.duckdb_path.with_suffix(".run.lock")), \
            tenants_module.run_lock("globex", two_tenants.settings("globex")):
        pass


@pytest.mark.slow
def test_the_cli_runs_one_tenant_and_lists_them_with_their_last_run(two_tenants: Tenants, tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(home), "CRM_ROI_TENANTS": str(two_tenants.source)}
    done = crm_roi("run", "--tenant", "globex", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "deals loaded     25;" in done.stdout
    assert str(tmp_path / "globex" / "crm_roi.published.duckdb") in done.stdout
    assert not (tmp_path / "acme" / "crm_roi.duckdb").exists()
    listed = crm_roi("tenants", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[2:]}
    assert lines["globex"][1:3] == [str(tmp_path / "globex" / "crm_roi.yaml"), "success"]
    assert lines["acme"][1:3] == [str(tmp_path / "acme" / "crm_roi.yaml"), "never"]
    wrong = crm_roi("run", "--tenant", "initech", cwd=tmp_path, env=env)
    assert wrong.returncode == 1
    assert wrong.stderr.strip().endswith("no tenant 'initech' (tenants: acme, globex)")
