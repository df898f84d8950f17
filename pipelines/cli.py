"""`crm-roi`: run the nightly job, the demo, or query the tables, from a shell.

A user mistake (a bad config key, a missing column, bad SQL) prints one line and
exits non-zero; tracebacks are for bugs.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click
import dagster as dg
import duckdb
from filelock import FileLock
from tabulate import tabulate

from connectors.files.reader import ExportFileError
from pipelines.config import ConfigError, Settings, load_settings
from pipelines.raw_files import required_streams_present
from pipelines.warehouse import WarehouseLocked, open_with_raw, wait_until_writable

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "data" / "sample" / "crm_roi.yaml"


class RunFailed(click.ClickException):
    """The nightly job failed; the message is the failing step's own error."""


def _instance() -> dg.DagsterInstance:
    """The DAGSTER_HOME instance when there is one (runs then show in the UI), else a throwaway one."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    if not Path(home).is_dir():
        raise click.ClickException(f"DAGSTER_HOME {home} is not a folder: create it (with dagster.yaml) or unset it")
    # Opening a new home creates Dagster's SQLite storage, and Dagster does not guard that
    # against a second process: two runs started together would both stamp the schema
    # version and one would fail. One opening at a time, the second finds the storage made.
    with FileLock(Path(home) / ".crm_roi_instance.lock"):
        return dg.DagsterInstance.get()


RUN_PID_TAG, RUN_HOST_TAG = "crm_roi/pid", "crm_roi/host"


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

    A SIGKILLed process cannot release the `duckdb` concurrency slot it claimed,
    so without this every later run in the instance would wait for it forever.
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


def _first_failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            error = event.step_failure_data.error
            while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
                error = error.cause
            return f"{event.step_key}: {error.message.strip().splitlines()[-1]}"
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data.evaluation
            if not evaluation.passed:
                return f"check {evaluation.check_name} failed on {evaluation.asset_key.to_user_string()}"
    return "the run failed (see the Dagster logs)"


def run_nightly(config_file: Path | str | None, full_reload: bool = False) -> tuple[Settings, list[str]]:
    """Validate the config, then materialise the nightly job in this process.

    Returns the settings and one line per source stream whose sync stopped early
    (the run still built the tables from everything else).
    """
    from pipelines.definitions import build_defs

    settings = load_settings(config_file)
    required_streams_present(settings)
    wait_until_writable(settings.duckdb_path)
    job = build_defs(str(config_file) if config_file else None).resolve_job_def("nightly")
    run_config = {
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        "ops": {node.name: {"config": {"full_reload": full_reload}}
                for node in job.nodes if node.name.startswith("raw__")},
    }
    with _instance() as instance:
        release_dead_runs(instance)
        tags = {RUN_PID_TAG: str(os.getpid()), RUN_HOST_TAG: socket.gethostname()}
        result = job.execute_in_process(instance=instance, run_config=run_config, tags=tags, raise_on_error=False)
    if not result.success:
        raise RunFailed(_first_failure(result))
    stopped = [
        f"{check.asset_key.to_user_string()}: {check.metadata['error'].value}"
        for check in result.get_asset_check_evaluations()
        if check.check_name == "sync_succeeded" and not check.passed
    ]
    return settings, stopped


def summary_lines(settings: Settings) -> list[str]:
    """The short run summary: what was loaded and rejected, and the ROI headline."""
    with duckdb.connect(str(settings.published_path), read_only=True) as con:
        periods, complete = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE is_complete) FROM kpi.periodic"
        ).fetchone()
        loaded = con.execute("SELECT count(*) FROM staging.deals").fetchone()[0]
        rejected = con.execute(
            "SELECT table_name, count(*) FROM quarantine.rejected_rows GROUP BY ALL ORDER BY 1"
        ).fetchall()
        roi = con.execute(
            "SELECT cumulative_benefit, cumulative_cost, roi, roi_pct, payback_period_months, npv "
            "FROM roi.summary"
        ).fetchone()
    benefit, cost, roi_x, roi_pct, payback, npv = roi

    def money(v: float | None) -> str:
        return "n/a" if v is None else f"{v:,.0f} {settings.base_currency}"

    quarantined = ", ".join(f"{t} {n}" for t, n in rejected) or "none"
    return [
        f"periods          {periods} {settings.period}s ({complete} complete), as of {settings.effective_as_of}",
        f"deals loaded     {loaded:,}; quarantined rows: {quarantined}",
        f"benefit / cost   {money(benefit)} / {money(cost)}",
        "ROI              " + ("n/a (no CRM cost yet)" if roi_x is None else f"{roi_x:.2f}x ({roi_pct:.1f} %)"),
        "payback          " + ("not reached" if payback is None else f"{payback:g} months after go-live"),
        f"NPV              {money(npv)}",
        f"tables           {settings.published_path} (schemas kpi, roi, staging, quarantine)",
    ]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """crm-roi: what is your CRM worth? Builds baseline, periodic KPI and rolling ROI tables in DuckDB."""


@cli.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Config file (default: $CRM_ROI_CONFIG, else ./crm_roi.yaml).")
@click.option("--full-reload", is_flag=True,
              help="Reload every export file and fully resync every API source (after a correction).")
def run(config_file: str | None, full_reload: bool) -> None:
    """Run the nightly job now: load new exports, rebuild staging, KPI and ROI tables."""
    settings, stopped = run_nightly(config_file, full_reload)
    click.echo("\n".join(summary_lines(settings)))
    if stopped:
        for line in stopped:
            click.echo(f"error: sync stopped early, {line}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default="crm_roi_demo.duckdb",
              show_default=True, help="DuckDB file to build.")
@click.option("--live", is_flag=True,
              help="Sync the demo deals and companies from a local fake HubSpot over HTTP instead of files.")
def demo(db_path: str, live: bool) -> None:
    """Run the nightly job on the bundled demo exports (no servers, no credentials)."""
    os.environ["CRM_ROI_DUCKDB"] = str(Path(db_path).resolve())
    if live:
        settings = _live_demo()
    else:
        settings, _ = run_nightly(DEMO_CONFIG)
    click.echo("\n".join(summary_lines(settings)))
    example = "SELECT period_start, roi_pct, payback_reached FROM roi.rolling"
    click.echo(f'\nTry: crm-roi query --db {settings.published_path.name} "{example}"')


def _live_demo() -> Settings:
    """The demo with deals and companies served by a fake HubSpot on 127.0.0.1.

    A new user sees a real sync (paging, rate limits, incremental cursor) without
    an account: the fake holds the demo's deals, the config points at it, and a
    second run shows the incremental sync fetching only what changed.
    """
    import secrets
    import tempfile

    import yaml

    from connectors.fakes.hubspot import FakeHubSpot

    token = secrets.token_urlsafe(24)
    os.environ["CRM_ROI_DEMO_HUBSPOT_TOKEN"] = token
    fake = FakeHubSpot.from_canonical(DEMO_CONFIG.parent, token=token)
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    with fake.running(), tempfile.TemporaryDirectory() as folder:
        config["sources"] = [
            {"kind": "hubspot", "name": "hubspot", "token": "env:CRM_ROI_DEMO_HUBSPOT_TOKEN",
             "base_url": fake.base_url, "columns": {"churned_at": "churn_date", "mrr": "mrr"}},
            {"kind": "files", "name": "demo_files", "path": str(DEMO_CONFIG.parent),
             "files": {"deals": None, "deal_stage_history": None, "customers": None}},
        ]
        config["finance"]["path"] = str(DEMO_CONFIG.parent / config["finance"]["path"])
        config["data_roots"] = [folder, str(DEMO_CONFIG.parent)]
        live_config = Path(folder) / "crm_roi.yaml"
        live_config.write_text(yaml.safe_dump(config), encoding="utf-8")
        click.echo(f"fake HubSpot on {fake.base_url}: {len(fake.deals):,} deals, {len(fake.companies):,} companies")
        settings, stopped = run_nightly(live_config)
        click.echo(f"full sync: {len(fake.log):,} HTTP requests")
        first = len(fake.log)
        fake.update_deals(list(fake.deals)[:25], name="Renamed in the CRM")
        run_nightly(live_config)
        click.echo(f"incremental sync after 25 deals changed: {len(fake.log) - first:,} HTTP requests")
    for line in stopped:
        click.echo(f"error: sync stopped early, {line}", err=True)
    return settings


@cli.command()
@click.argument("sql")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Config file naming the DuckDB file (default: $CRM_ROI_CONFIG, else ./crm_roi.yaml).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="DuckDB file to query directly.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv"]), default="table", show_default=True)
def query(sql: str, config_file: str | None, db_path: str | None, fmt: str) -> None:
    """Run one read-only SQL query against the tables and print the result.

    Example: crm-roi query "SELECT period_start, roi_pct FROM roi.rolling"
    """
    path = Path(db_path) if db_path else load_settings(config_file).published_path
    if not path.is_file():
        raise click.ClickException(f"no DuckDB file at {path}: run `crm-roi run` (or `demo`) first")
    with open_with_raw(path, read_only=True) as con:  # the working file's raw layer too, when it has one
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchall()
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow([_spreadsheet_safe(c) for c in columns])
        writer.writerows([_spreadsheet_safe(v) for v in row] for row in rows)
    else:
        click.echo(tabulate(rows, headers=columns, tablefmt="simple", floatfmt=",.4f"))


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(value: object) -> object:
    """CSV injection guard (OWASP): a text cell a spreadsheet would run as a formula gets a
    leading single quote, so `=HYPERLINK(...)` from a CRM field is shown, never evaluated.
    Numbers, dates and nulls pass unchanged (a negative number is data, not a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (ConfigError, ExportFileError, WarehouseLocked) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except duckdb.Error as exc:
        click.echo(f"error: {str(exc).splitlines()[0]}", err=True)
        sys.exit(1)
