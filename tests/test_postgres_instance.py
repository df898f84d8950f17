"""The multi-tenant deployment end to end: the Dagster instance of deploy/dagster.yaml in a real
PostgreSQL server, a real `dagster-daemon` running the tenants sensor, the nightly schedule and
the run queue, and three tenants' nightly runs checked in Postgres and in each tenant's files.

PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user (Debian's
package makes it), else as a user this test creates.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import duckdb
import psycopg2
import pytest
import yaml

from pipelines.definitions import NIGHTLY_TAG, tenant_assets
from pipelines.resources import PARTITION_TAG
from pipelines.tenants import TENANT_PARTITIONS
from tests.conftest import tenant_deals, tenant_finance, write_tenant

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVER_USER = "crm_roi_pg"  # created only when Debian's `postgres` user is missing
TENANTS = {"acme": ("A", 40), "globex": ("G", 25), "initech": ("I", 30)}
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _postgres_bin() -> Path:
    """Where initdb and pg_ctl are: on PATH, else in Debian's versioned folder."""
    found = shutil.which("initdb")
    folders = [Path(found).resolve().parent] if found else []
    folders += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in folders:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise AssertionError("PostgreSQL's initdb and pg_ctl are needed: apt-get install postgresql (.ci/run does)")


def _server_user() -> list[str]:
    """The command prefix that runs the server as a user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres").pw_name
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True)
        user = SERVER_USER
    return ["runuser", "-u", user, "--"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    """A PostgreSQL server on a free loopback port, in a temporary folder; yields the DAGSTER_PG_* variables."""
    bin_dir, as_user = _postgres_bin(), _server_user()
    folder = Path(tempfile.mkdtemp(prefix="crm_roi_pg_"))
    if as_user:
        shutil.chown(folder, as_user[2])
    data, port = folder / "data", _free_port()
    subprocess.run([*as_user, bin_dir / "initdb", "-D", data, "-U", "dagster", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "start",
                    "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"], check=True, capture_output=True)
    try:
        yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_DB": "postgres",
               "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "unused-with-trust"}
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _wait(what: str, done: Callable[[], bool], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; daemon log:\n{log.read_text()[-4000:]}"
        time.sleep(2)


def _dagster(*args: str, env: dict, cwd: Path) -> None:
    done = subprocess.run([str(BIN / "dagster"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def _deal_ids(folder: Path) -> set[str]:
    with (folder / "exports" / "deals.csv").open(newline="") as handle:
        return {row["deal_id"] for row in csv.DictReader(handle)}


@pytest.mark.slow
def test_three_tenants_nightly_runs_queue_in_postgres(postgres: dict[str, str], tmp_path: Path, monkeypatch):
    for name, (prefix, count) in TENANTS.items():
        write_tenant(tmp_path, name, tenant_deals(prefix, count), tenant_finance(prefix))
    # Every minute, so the test sees a tick; the schedule is stopped after its first.
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump({"schedule_cron": "* * * * *",
                                            "tenants": {name: f"{name}/crm_roi.yaml" for name in TENANTS}}))
    home = tmp_path / "home"
    home.mkdir()
    # The deployment's own instance file, with the nightly limit at 2 so that three tenants must queue.
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    [nightly_rule] = [r for r in config["concurrency"]["runs"]["tag_concurrency_limits"] if r["key"] == NIGHTLY_TAG]
    nightly_rule["limit"] = 2
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    workspace = home / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": {
        "module_name": "pipelines.definitions", "working_directory": str(REPO), "location_name": "crm_roi"}}]}))
    env = {**os.environ, **postgres, "DAGSTER_HOME": str(home), "CRM_ROI_TENANTS": str(tenants_file)}
    env.pop("CRM_ROI_CONFIG", None)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                                  cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with dg.DagsterInstance.get() as instance:
            # The tenants sensor, on by default, turns the file's tenants into partitions.
            _wait("the tenants sensor", lambda: set(instance.get_dynamic_partitions(TENANT_PARTITIONS.name))
                  == set(TENANTS), 180, log)
            _dagster("schedule", "start", "nightly_schedule", "-w", str(workspace), env=env, cwd=home)

            def scheduled() -> list[dg.RunRecord]:
                return instance.get_run_records(dg.RunsFilter(job_name="nightly", tags={NIGHTLY_TAG: "nightly"}))

            _wait("the schedule's tick", lambda: len(scheduled()) == len(TENANTS), 150, log)
            _dagster("schedule", "stop", "nightly_schedule", "-w", str(workspace), env=env, cwd=home)
            # A second run of acme, launched by hand, queues behind the scheduled one.
            _dagster("job", "launch", "-w", str(workspace), "-j", "nightly",
                     "--tags", json.dumps({PARTITION_TAG: "acme"}), env=env, cwd=home)
            runs = lambda: instance.get_run_records(dg.RunsFilter(job_name="nightly"))  # noqa: E731
            _wait("every run to finish", lambda: all(r.dagster_run.status in FINISHED for r in runs()), 480, log)
            records = runs()
            materialized = {key: instance.get_materialized_partitions(key)
                            for asset in tenant_assets(["team:data"]) for key in asset.keys}
    finally:
        daemon.terminate()
        daemon.wait(60)

    assert len(records) == len(TENANTS) + 1
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records), log.read_text()[-4000:]
    by_schedule = [r for r in records if r.dagster_run.tags.get(NIGHTLY_TAG) == "nightly"]
    assert sorted(r.dagster_run.tags[PARTITION_TAG] for r in by_schedule) == sorted(TENANTS)
    # The queue's limits: at most two nightly runs at once, and acme's two runs one after the other.
    assert _most_at_once([(r.start_time, r.end_time) for r in by_schedule]) <= 2
    acme = [(r.start_time, r.end_time) for r in records if r.dagster_run.tags[PARTITION_TAG] == "acme"]
    assert len(acme) == 2 and _most_at_once(acme) == 1
    # Every asset materialised once per tenant partition.
    assert materialized and all(partitions == set(TENANTS) for partitions in materialized.values())
    # Each tenant's tables hold its own deals, all of them, and no other tenant's.
    for name in TENANTS:
        with duckdb.connect(str(tmp_path / name / "crm_roi.published.duckdb"), read_only=True) as con:
            ids = {row[0] for row in con.execute("SELECT deal_id FROM staging.deals").fetchall()}
            history = con.execute("SELECT count(*) FROM history.roi_summary").fetchone()[0]
        assert ids == _deal_ids(tmp_path / name)
        assert history == (2 if name == "acme" else 1)  # one published run per run of the tenant
    # The runs and their events are in Postgres itself.
    with psycopg2.connect(host="127.0.0.1", port=int(postgres["DAGSTER_PG_PORT"]), user="dagster",
                          dbname="postgres") as pg, pg.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE pipeline_name = 'nightly' AND status = 'SUCCESS'")
        assert cursor.fetchone()[0] == len(TENANTS) + 1
        cursor.execute("SELECT DISTINCT partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert {row[0] for row in cursor.fetchall()} == set(TENANTS)
