"""Crash safety: a run SIGKILLed at any step, then re-run, leaves exactly the tables of a clean run.

Real processes, real files, no mocks. A scaled demo (`generate_demo_data --scale 3`)
makes a run last long enough to aim at: each kill waits for the target step's
STEP_START in the run's Dagster event log (DAGSTER_HOME is a scratch instance),
then lands a third of the way through that step, as measured in the
uninterrupted reference run (half-way missed a short load step once, when the
killed run's step went faster than the reference's). Tables are compared by
fingerprint: per table the row count, an order-independent sum of row hashes
(load-time columns left out) and, for floating-point columns, the column sums
to float precision (KPI sums may add up in any order).

docs/reliability.md lists what each test proves.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import dagster as dg
import pytest
import sqlalchemy
import yaml
from filelock import FileLock

from connectors.fakes.hubspot import FakeHubSpot, list_after
from connectors.fakes.server import Fault
from pipelines.models import REGISTRY
from pipelines.warehouse import open_with_raw
from tests.conftest import CRM_ROI

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
CONFIG = "exports/crm_roi.yaml"
TOKEN_ENV = "CRASH_TEST_HUBSPOT_TOKEN"
TOKEN = "pat-na1-crash-safety-test-token-0b7e"

# Columns stamped at load time (or with now()): they differ between two runs of the same data.
LOAD_TIME = {"_batch_id", "_loaded_at", "batch_id", "rejected_at", "run_id", "run_at"}
LOAD_TIME_BY_TABLE = {
    "raw.loaded_files": {"loaded_at"}, "raw.sync_state": {"updated_at"},
    # The last batch id may have been used up by a killed run.
    "bookkeeping.build_state": {"raw_last_batch", "built_at", "validated_batch", "accepted_batch"},
}
FLOAT_TYPES = {"DOUBLE", "FLOAT", "REAL"}
# An API row's _row_number is its place in the page that brought it: a resumed (or incremental)
# sync re-reads a lookback window in other pages, so the same record lands at another position.
API_ROW_POSITION = frozenset({"_row_number"})

# (step, phase): where the nightly job is killed: a third of the way through the step, by the reference timing.
KILL_POINTS = (
    ("raw__deal_stage_history", "mid-load"),
    ("raw__deals", "mid-load"),
    ("staging__deal_stage_history", "mid-staging"),
    ("staging__deals", "mid-staging"),
    ("kpi__periodic", "mid-KPI/ROI"),
    ("publish__analyst_copy", "mid-publish"),
)


STEP_EVENTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}


# -- fingerprints ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    row_hash: int  # sum of hash(every non-float, non-load-time column): duplicates and gaps change it
    float_sums: tuple[float | None, ...]

    def matches(self, other: TableFingerprint) -> bool:
        return (self.rows, self.row_hash) == (other.rows, other.row_hash) and all(
            a == b or (a is not None and b is not None and a == pytest.approx(b, rel=1e-9, abs=1e-6))
            for a, b in zip(self.float_sums, other.float_sums, strict=True)
        )


def fingerprint(db: Path, schemas: tuple[str, ...] | None = None,
                also_skip: frozenset[str] = frozenset()) -> dict[str, TableFingerprint]:
    """Every table of `db` (or of `schemas`), fingerprinted without its load-time columns."""
    result = {}
    with open_with_raw(db, read_only=True) as con:
        # The raw layer is its own file, attached as catalog raw: its tables are named raw.<table>.
        tables = con.execute(
            "SELECT table_catalog, table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' ORDER BY 1, 2, 3"
        ).fetchall()
        for catalog, in_schema, table in tables:
            schema = "raw" if catalog == "raw" else in_schema
            if schemas is not None and schema not in schemas:
                continue
            name = f"{schema}.{table}"
            skip = LOAD_TIME | LOAD_TIME_BY_TABLE.get(name, set()) | also_skip
            columns = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_catalog = ? AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [catalog, in_schema, table],
            ).fetchall()
            exact = [
                # A quarantined row's payload carries its raw row, load-time columns included.
                f"""regexp_replace("{c}"::VARCHAR, '"_(batch_id|loaded_at)":[^,}}]*', '', 'g')"""
                if kind == "JSON" else f'"{c}"'
                for c, kind in columns if c not in skip and kind not in FLOAT_TYPES
            ]
            floats = [f'sum("{c}")' for c, kind in columns if kind in FLOAT_TYPES]
            row_hash = f"coalesce(sum(hash({', '.join(exact)})::HUGEINT), 0)" if exact else "0"
            # A history table gains one run per published run: compare the latest run's rows.
            latest = (f'WHERE run_id = (SELECT arg_max(run_id, run_at) FROM "{schema}"."{table}")'
                      if schema == "history" else "")
            row = con.execute(
                f'SELECT count(*), {row_hash} {"".join(", " + f for f in floats)} '
                f'FROM "{schema}"."{table}" {latest}'
            ).fetchone()
            result[name] = TableFingerprint(row[0], int(row[1]), tuple(row[2:]))
    return result


def tables_of(workdir: Path, raw_skip: frozenset[str] = frozenset()) -> dict[str, TableFingerprint]:
    """The published copy (every table analysts read) and the working file's raw layer."""
    exports = workdir / "exports"
    return {
        **{f"published:{k}": v for k, v in fingerprint(exports / "crm_roi.published.duckdb").items()},
        **fingerprint(exports / "crm_roi.duckdb", schemas=("raw",), also_skip=raw_skip),
    }


def differences(actual: dict[str, TableFingerprint], expected: dict[str, TableFingerprint]) -> list[str]:
    diffs = [f"missing table {t}" for t in expected.keys() - actual.keys()]
    diffs += [f"extra table {t}" for t in actual.keys() - expected.keys()]
    diffs += [f"{t}: {actual[t]} != {expected[t]}" for t in expected.keys() & actual.keys()
              if not actual[t].matches(expected[t])]
    return diffs


# -- runs ---------------------------------------------------------------------------------------
def workspace(root: Path, exports: Path, name: str) -> Path:
    """A scratch folder with its own copy of the exports."""
    workdir = root / name
    shutil.copytree(exports, workdir / "exports")
    return workdir


def new_home(workdir: Path) -> Path:
    """A fresh Dagster instance with the repo's dagster.yaml (pools, run queue).

    Each killed run gets its own, so the kill tests do not lean on the recovery of a
    killed run's pool slot, which test_a_killed_run_does_not_keep_the_duckdb_pool_slot
    covers on its own.
    """
    home = workdir / f"dagster_home_{time.monotonic_ns()}"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return home


def env_for(home: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_ROI_", "DAGSTER_"))}
    return {**env, **({"DAGSTER_HOME": str(home)} if home else {}), **extra}


def start_run(workdir: Path, home: Path, **extra_env: str) -> subprocess.Popen:
    """`crm-roi run --config ...` in its own process group (so a SIGKILL takes all of it)."""
    log = (workdir / f"run-{time.monotonic_ns()}.log").open("w")
    return subprocess.Popen([CRM_ROI, "run", "--config", CONFIG], cwd=workdir, env=env_for(home, **extra_env),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def run_to_end(workdir: Path, home: Path | None = None, **extra_env: str) -> subprocess.CompletedProcess:
    done = subprocess.run([CRM_ROI, "run", "--config", CONFIG], cwd=workdir, env=env_for(home, **extra_env),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def sigkill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def open_instance(home: Path) -> dg.DagsterInstance:
    """The run's Dagster instance, opened under crm-roi's lock: the first to open a new home creates its storage."""
    with FileLock(home / ".crm_roi_instance.lock"):
        return dg.DagsterInstance.from_config(str(home))


def step_events(instance: dg.DagsterInstance) -> dict[tuple[str, str], float]:
    """{(event type, step key): unix time} of the runs recorded in a Dagster instance (read through its API)."""
    events: dict[tuple[str, str], float] = {}
    try:
        for run in instance.get_runs():
            for record in instance.all_logs(run.run_id, of_type=STEP_EVENTS):
                events[(record.dagster_event.event_type_value, record.step_key)] = record.timestamp
    except sqlalchemy.exc.OperationalError:  # the run is writing its storage: look again on the next poll
        pass
    return events


def wait_for_step(instance: dg.DagsterInstance, proc: subprocess.Popen, step: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while ("STEP_START", step) not in step_events(instance):
        assert proc.poll() is None, f"the run ended (status {proc.returncode}) before {step} started"
        assert time.monotonic() < deadline, f"{step} never started"
        time.sleep(0.01)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scaled_exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo exports at three times the volume, with the demo config."""
    folder = tmp_path_factory.mktemp("scaled") / "exports"
    subprocess.run([sys.executable, str(REPO / "scripts" / "generate_demo_data.py"), "--out", str(folder),
                    "--scale", "3"], check=True, capture_output=True, timeout=120)
    shutil.copy(SAMPLE / "crm_roi.yaml", folder / "crm_roi.yaml")
    return folder


@dataclass(frozen=True)
class Reference:
    tables: dict[str, TableFingerprint]
    step_seconds: dict[str, float]  # how long each step took in the uninterrupted run
    run_seconds: float


@pytest.fixture(scope="module")
def reference(scaled_exports: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One uninterrupted run of the scaled demo: the tables every other run must end up with."""
    workdir = workspace(tmp_path_factory.mktemp("reference"), scaled_exports, "clean")
    home = new_home(workdir)
    started = time.monotonic()
    run_to_end(workdir, home)
    elapsed = time.monotonic() - started
    with open_instance(home) as instance:
        events = step_events(instance)
    steps = {step: events[("STEP_SUCCESS", step)] - at
             for (kind, step), at in events.items() if kind == "STEP_START"}
    tables = tables_of(workdir)
    assert tables["published:staging.deals"].rows > 15_000  # the scaled demo, not the small one
    return Reference(tables, steps, elapsed)


# -- 1. SIGKILL, then re-run -------------------------------------------------------------------
@dataclass
class KillOutcome:
    step: str
    phase: str
    mid_step: bool  # killed after the step started and before it succeeded
    diffs: list[str]
    published_after_kill: str


def kill_mid_step(workdir: Path, home: Path, step: str, after: float = 0.0) -> None:
    """Start `crm-roi run` and SIGKILL it `after` seconds into `step`."""
    with open_instance(home) as instance:  # opened once: polling must see the step start within milliseconds
        proc = start_run(workdir, home)
        try:
            wait_for_step(instance, proc, step)
            time.sleep(after)
        finally:
            sigkill(proc)


def kill_and_rerun(root: Path, exports: Path, ref: Reference, step: str, phase: str) -> KillOutcome:
    workdir = workspace(root, exports, step)
    home = new_home(workdir)
    kill_mid_step(workdir, home, step, ref.step_seconds[step] / 3)
    with open_instance(home) as instance:
        mid_step = ("STEP_SUCCESS", step) not in step_events(instance)
    published = workdir / "exports" / "crm_roi.published.duckdb"
    # A first run killed before its publish swap leaves no half-written analyst copy behind.
    state = "none" if not published.exists() else f"{len(fingerprint(published))} tables"
    run_to_end(workdir, new_home(workdir))
    return KillOutcome(step, phase, mid_step, differences(tables_of(workdir), ref.tables), state)


@pytest.mark.reliability
def test_a_run_killed_at_any_step_then_rerun_gives_the_tables_of_a_clean_run(
    scaled_exports: Path, reference: Reference, tmp_path: Path
):
    # Kill points run two at a time, each in its own folder and Dagster instance.
    # The second KPI/ROI point is the slowest other mart of the reference run: a step of a few
    # milliseconds can finish before the run is seen to start it, and then nothing is killed mid-step.
    # A mart that reads no table (roi.assumptions) is left out: it selects the run's settings only,
    # so its step time is its connection's, not a model's.
    marts = [s for s in reference.step_seconds if s.startswith(("kpi__", "roi__")) and s != "kpi__periodic"
             and REGISTRY.table(s.replace("__", ".", 1)).reads]
    points = [*KILL_POINTS, (max(marts, key=reference.step_seconds.__getitem__), "mid-KPI/ROI")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda point: kill_and_rerun(tmp_path, scaled_exports, reference, *point),
                                 points))
    by_phase: dict[str, int] = {}
    for outcome in outcomes:
        by_phase[outcome.phase] = by_phase.get(outcome.phase, 0) + 1
    print(f"\nreference run {reference.run_seconds:.1f} s; killed at {len(outcomes)} points: "
          + ", ".join(f"{n} {phase}" for phase, n in by_phase.items()))
    for outcome in outcomes:
        print(f"  {outcome.step:30} mid-step={outcome.mid_step} published after kill: "
              f"{outcome.published_after_kill}; re-run identical: {not outcome.diffs}")
    assert all(o.mid_step for o in outcomes), [o.step for o in outcomes if not o.mid_step]
    assert all(o.published_after_kill == "none" for o in outcomes if o.phase != "mid-publish")
    for outcome in outcomes:
        assert outcome.diffs == [], f"killed {outcome.phase} ({outcome.step}): {outcome.diffs}"


@pytest.mark.reliability
def test_a_killed_rerun_is_also_safe_and_a_published_copy_survives_a_kill_mid_publish(
    scaled_exports: Path, reference: Reference, tmp_path: Path
):
    """Kill the same folder twice in a row (mid-load, then mid-publish of the re-run), then finish:
    the earlier published copy stays readable through the second kill, and the end state is the clean one."""
    workdir = workspace(tmp_path, scaled_exports, "twice")
    run_to_end(workdir)  # a published copy exists: the night before
    published = workdir / "exports" / "crm_roi.published.duckdb"
    before = fingerprint(published)
    (workdir / "exports" / "crm_roi.duckdb").unlink()  # start over, so the next run loads every file again
    for step in ("raw__deals", "publish__analyst_copy"):
        kill_mid_step(workdir, new_home(workdir), step, reference.step_seconds[step] / 2)
        assert differences(fingerprint(published), before) == []  # the old copy, whole
    run_to_end(workdir)
    assert differences(tables_of(workdir), reference.tables) == []


# -- 1b. SIGKILL mid-download from an API -----------------------------------------------------
def hubspot_workspace(root: Path, fake: FakeHubSpot, name: str) -> Path:
    workdir = root / name
    exports = workdir / "exports"
    shutil.copytree(SAMPLE, exports)
    config = yaml.safe_load((SAMPLE / "crm_roi.yaml").read_text(encoding="utf-8"))
    config["sources"] = [
        {"kind": "hubspot", "name": "hubspot", "token": f"env:{TOKEN_ENV}", "base_url": fake.base_url,
         "columns": {"churned_at": "churn_date", "mrr": "mrr"}},
        {"kind": "files", "name": "files", "path": ".",
         "files": {"deals": None, "deal_stage_history": None, "customers": None}},
    ]
    (exports / "crm_roi.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return workdir


@pytest.mark.reliability
def test_a_run_killed_mid_download_resumes_to_the_tables_of_a_clean_sync(tmp_path: Path):
    fake = FakeHubSpot.from_canonical(SAMPLE, token=TOKEN)
    live = sorted(d.id for d in fake.deals.values() if d.archived_at is None)
    # The deals list with stage history comes 50 a page: stall on page 20 (of ~110).
    stalled = urlencode({"after": list_after(live[50 * 19 - 1])})
    with fake.running():
        clean = hubspot_workspace(tmp_path, fake, "clean")
        run_to_end(clean, **{TOKEN_ENV: TOKEN})
        expected = tables_of(clean, API_ROW_POSITION)

        killed = hubspot_workspace(tmp_path, fake, "killed")
        fake.inject(Fault(kind="slow", route=stalled, delay=60))
        started_at = len(fake.log)  # the clean run asked for that page too
        proc = start_run(killed, new_home(killed), **{TOKEN_ENV: TOKEN})
        try:
            deadline = time.monotonic() + 120
            while not any(stalled in path for _, _, path in fake.log[started_at:]):
                assert proc.poll() is None, "the run ended before it reached the stalled page"
                assert time.monotonic() < deadline, "the run never reached the stalled page"
                time.sleep(0.02)
        finally:
            sigkill(proc)
        with open_with_raw(killed / "exports" / "crm_roi.duckdb", read_only=True) as con:
            committed = con.execute("SELECT count(*) FROM raw.deals").fetchone()[0]
        assert 0 < committed < expected["raw.deals"].rows  # some pages were in, the rest were not

        resumed_from = len(fake.log)
        run_to_end(killed, **{TOKEN_ENV: TOKEN})
        first_list = next(p for _, _, p in fake.log[resumed_from:] if p.startswith("/crm/v3/objects/deals?"))
        assert stalled in first_list  # resumed at the page in flight, not from scratch
    assert differences(tables_of(killed, API_ROW_POSITION), expected) == []
    with open_with_raw(killed / "exports" / "crm_roi.duckdb", read_only=True) as con:
        total, distinct = con.execute("SELECT count(*), count(DISTINCT deal_id) FROM raw.deals").fetchone()
    assert total == distinct


# -- 2. concurrent runs and the lock wait -----------------------------------------------------
@pytest.mark.reliability
def test_two_runs_started_together_both_finish_and_leave_the_clean_tables(
    scaled_exports: Path, reference: Reference, tmp_path: Path
):
    workdir = workspace(tmp_path, scaled_exports, "together")
    home = new_home(workdir)  # one instance, as on a real host: its pools and the lock wait both apply
    first, second = start_run(workdir, home), start_run(workdir, home)
    codes = [first.wait(timeout=240), second.wait(timeout=240)]
    logs = {p.name: p.read_text() for p in workdir.glob("run-*.log")}
    assert codes == [0, 0], logs
    assert differences(tables_of(workdir), reference.tables) == []
    with open_with_raw(workdir / "exports" / "crm_roi.duckdb", read_only=True) as con:
        # Each file was loaded once: the second run waited for the lock, then skipped it.
        files, distinct = con.execute("SELECT count(*), count(DISTINCT (source, stream, file_name)) "
                                      "FROM raw.loaded_files").fetchone()
    assert files == distinct


OPEN_INSTANCE = "from pipelines.runner import dagster_instance; dagster_instance().dispose()"


@pytest.mark.reliability
def test_a_new_dagster_home_opened_by_several_runs_at_once_is_created_once(tmp_path: Path):
    """Dagster creates its SQLite storage on first open without a guard of its own.

    Unguarded, one process in three failed stamping the schema version (13 of 40 in
    rounds of four); the test above failed once in CI that way.
    """
    for round_ in range(3):
        workdir = tmp_path / f"round{round_}"
        workdir.mkdir()
        home = new_home(workdir)
        openers = [subprocess.Popen([sys.executable, "-c", OPEN_INSTANCE], cwd=REPO, env=env_for(home),
                                    stderr=subprocess.PIPE, text=True) for _ in range(4)]
        errors = [(proc.communicate(timeout=120)[1], proc.returncode) for proc in openers]
        assert [err[-2000:] for err, code in errors if code != 0] == []
        with dg.DagsterInstance.from_config(str(home)) as instance:
            current, head = instance.run_storage.alembic_version()
        assert current == head  # stamped once, at the head revision


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # a write connection: DuckDB locks the file
print("holding", flush=True)
time.sleep(120)
"""


@pytest.mark.reliability
def test_a_file_held_by_another_process_fails_the_run_with_one_line_after_the_wait(tmp_path: Path):
    shutil.copytree(SAMPLE, tmp_path / "exports")
    working = tmp_path / "exports" / "crm_roi.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(working)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        done = subprocess.run([CRM_ROI, "run", "--config", CONFIG], cwd=tmp_path, capture_output=True, text=True,
                              env=env_for(None, CRM_ROI_LOCK_WAIT_SECONDS="1"), timeout=120)
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Stack Trace" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"error: {working}: locked by another process (PID {holder.pid})")
    assert "CRM_ROI_LOCK_WAIT_SECONDS" in lines[0]
    assert elapsed < 30  # start-up plus a 1 s wait, not one wait per step


@pytest.mark.reliability
def test_a_killed_run_does_not_keep_the_duckdb_pool_slot(scaled_exports: Path, tmp_path: Path):
    """A SIGKILLed run cannot release its `duckdb` pool slot; the next `crm-roi run` frees it
    (pipelines/runner.py release_dead_runs) instead of waiting for it forever."""
    workdir = workspace(tmp_path, scaled_exports, "slot")
    home = new_home(workdir)
    kill_mid_step(workdir, home, "raw__deals")
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots, "the kill left no slot"
    run_to_end(workdir, home)  # would hang (and time out) while the dead run held the slot
    assert instance.event_log_storage.get_concurrency_info("duckdb").claimed_slots == []
    killed = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE]
    assert len(killed) == 1
