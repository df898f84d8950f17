"""Run the nightly job in this process, as `crm-roi run` and `crm-roi demo` do.

The run is recorded in the DAGSTER_HOME instance when there is one, so it shows in
the UI beside scheduled runs. A step's own error is raised as itself (an export
file that cannot be read, a locked warehouse), so the CLI maps it to one line by
its type; a failed blocking check is raised as `ChecksFailed` naming the check.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from filelock import FileLock

from pipelines.assets.api import api_assets, tenant_api_assets
from pipelines.assets.raw import raw_assets
from pipelines.config import Settings
from pipelines.definitions import build_defs, build_tenant_defs, full_reload_config
from pipelines.raw_files import required_streams_present, unmatched_message
from pipelines.resources import PARTITION_TAG
from pipelines.tenants import TENANT_PARTITIONS, Tenants
from pipelines.warehouse import wait_until_writable

RUN_PID_TAG, RUN_HOST_TAG = "crm_roi/pid", "crm_roi/host"


class InstanceError(RuntimeError):
    """DAGSTER_HOME points at something that is not a Dagster instance folder."""


class ChecksFailed(RuntimeError):
    """A blocking asset check failed: the tables downstream kept their last good state."""


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    log: Path  # every event of the run, stack traces included
    # One line per API source stream whose sync stopped early (the run still built the tables
    # from everything else).
    stopped: list[str]
    # One line per failed warn-level check (a stage counted open though named won, deals without amount)
    # and per source folder holding exports that no stream reads.
    warnings: list[str]
    # Per files source: the files the run loaded and those it skipped as unchanged.
    files: dict[str, dict[str, list[str]]]


def dagster_instance() -> dg.DagsterInstance:
    """The DAGSTER_HOME instance when there is one (runs then show in the UI), else a throwaway one."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    if not Path(home).is_dir():
        raise InstanceError(f"DAGSTER_HOME {home} is not a folder: create it (with dagster.yaml) or unset it")
    # Opening a new home creates Dagster's SQLite storage, and Dagster does not guard that
    # against a second process: two runs started together would both stamp the schema
    # version and one would fail. One opening at a time, the second finds the storage made.
    with FileLock(Path(home) / ".crm_roi_instance.lock"):
        return dg.DagsterInstance.get()


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail the runs of this host whose process was killed, and free their pool slots.

    A SIGKILLed process cannot release the `duckdb` concurrency slot it claimed, so
    without this every later run in the instance would wait for it forever. Dagster's
    own run monitoring frees a finished run's slots through the same storage call; the
    instance has no higher-level one.
    """
    released = []
    host = socket.gethostname()
    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED],
                                               tags={RUN_HOST_TAG: host})):
        pid = run.tags.get(RUN_PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and _process_gone(int(pid)):
            instance.report_run_failed(run, message=f"crm-roi process {pid} ended without finishing the run")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            released.append(run.run_id)
    return released


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The blocking (error-severity) checks that failed in the run, one line each."""
    return [
        _check_message(evaluation)
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if not (evaluation := record.dagster_event.event_specific_data).passed
        and evaluation.severity == dg.AssetCheckSeverity.ERROR
    ]


def _check_message(evaluation: dg.AssetCheckEvaluation) -> str:
    """The check's own sentence when it wrote one, else which check failed where."""
    message = evaluation.metadata.get("message")
    if message is not None and message.value:
        return str(message.value)
    return f"check {evaluation.check_name} failed on {evaluation.asset_key.to_user_string()}"


def log_path(settings: Settings) -> Path:
    """The full log of the last run, beside the working file: crm_roi.duckdb -> crm_roi.log."""
    return settings.duckdb_path.with_suffix(".log")


def run_nightly(settings: Settings, full_reload: bool = False, verbose: bool = False,
                key_prefix: str | None = None, tenant: tuple[Tenants, str] | None = None) -> RunOutcome:
    """Materialise the nightly job for `settings` in this process (its assets under `key_prefix`, if any).

    `tenant`: the tenants file and the tenant whose settings these are; the run is then the
    tenant's partition of the tenants' job, as a scheduled run of that tenant would be.
    Dagster's events go to the log file (and, `verbose`, to the terminal too); an error
    raised by a step carries the log file's name as a note.
    """
    required_streams_present(settings)
    wait_until_writable(settings.duckdb_path)
    if tenant:
        job = build_tenant_defs(tenant[0]).resolve_job_def("nightly")
        api = tenant_api_assets()
    else:
        job = build_defs(settings, key_prefix).resolve_job_def("nightly")
        api = api_assets(settings)
    log = log_path(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch(mode=0o600)  # private, as the DuckDB files are: errors quote CRM values
    loggers: dict = {"file": {"config": {"path": str(log)}}}
    if verbose:
        loggers["console"] = {"config": {"log_level": "INFO"}}
    run_config = {"loggers": loggers}
    if full_reload:
        run_config |= full_reload_config([*raw_assets, *api])
    run_id = str(uuid.uuid4())
    with dagster_instance() as instance:
        release_dead_runs(instance)
        tags = {RUN_PID_TAG: str(os.getpid()), RUN_HOST_TAG: socket.gethostname()}
        partition = tenant[1] if tenant else None
        if partition and not instance.has_dynamic_partition(TENANT_PARTITIONS.name, partition):
            instance.add_dynamic_partitions(TENANT_PARTITIONS.name, [partition])  # as the sensor would
        try:
            result = job.execute_in_process(instance=instance, run_config=run_config, tags=tags, run_id=run_id,
                                            partition_key=partition)
        except dg.DagsterError as exc:
            # Dagster stops the run with an error of its own when a blocking check fails.
            if not (failed := _failed_checks(instance, run_id)):
                exc.add_note(f"full log: {log}")
                raise
            error = ChecksFailed("; ".join(failed))
            error.add_note(f"full log: {log}")
            raise error from None
        except Exception as exc:  # a step's own error, raised as itself
            exc.add_note(f"full log: {log}")
            raise
    checks = result.get_asset_check_evaluations()
    stopped = [f"{check.asset_key.to_user_string()}: {check.metadata['error'].value}"
               for check in checks if check.check_name == "sync_succeeded" and not check.passed]
    warnings = [_check_message(check) for check in checks
                if not check.passed and check.severity == dg.AssetCheckSeverity.WARN]
    files: dict[str, dict[str, list[str]]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        for source, read in materialization.metadata.get("files", dg.MetadataValue.json({})).value.items():
            for outcome, names in read.items():
                files.setdefault(source, {"loaded": [], "unchanged": []})[outcome] += names
        unmatched = materialization.metadata.get("files_matching_no_stream")
        warnings += [unmatched_message(source, names)
                     for source, names in (unmatched.value.items() if unmatched else [])]
    return RunOutcome(run_id, log, stopped, warnings, files)


@dataclass(frozen=True)
class LastRun:
    status: str
    ended: str  # UTC, to the minute; empty while the run is going on


def last_runs(tenants: list[str]) -> dict[str, LastRun]:
    """Each tenant's last nightly run in the DAGSTER_HOME instance (none without one)."""
    found: dict[str, LastRun] = {}
    with dagster_instance() as instance:
        for tenant in tenants:
            records = instance.get_run_records(
                dg.RunsFilter(job_name="nightly", tags={PARTITION_TAG: tenant}), limit=1)
            if records:
                ended = records[0].end_time
                found[tenant] = LastRun(records[0].dagster_run.status.value.lower(), "" if ended is None else
                                        dt.datetime.fromtimestamp(ended, dt.UTC).strftime("%Y-%m-%d %H:%M"))
    return found
