"""`crm-roi`: start a config, check it, run the nightly job, the demo, or query the tables, from a shell.

This module only parses arguments and prints; the work lives in starter_config.py,
preflight.py, runner.py, demo.py, query.py, report/ and export.py. A user mistake (a
bad config key, a missing column, bad SQL) prints one line and exits non-zero;
tracebacks are for bugs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import click
import duckdb

from connectors.files.reader import ExportFileError
from pipelines.config import ConfigError, load_settings
from pipelines.demo import DemoUnavailable, run_demo, run_live_demo
from pipelines.export import FORMATS, Format, export
from pipelines.history import changes
from pipelines.preflight import ERROR, preflight
from pipelines.query import NoTables, NotAQuery, as_table, default_database, run_query, write_csv
from pipelines.report import ReportError, default_report_dir, write_report
from pipelines.runner import ChecksFailed, InstanceError, RunOutcome, last_runs, run_nightly
from pipelines.starter_config import InitError, write_starter_config
from pipelines.summary import summary_lines
from pipelines.tenants import TENANTS_VARIABLE, Tenants, read_tenants
from pipelines.warehouse import RawFileOutdated, WarehouseLocked

# Errors a user can fix, printed as their one-line message.
USER_ERRORS = (ConfigError, ExportFileError, WarehouseLocked, RawFileOutdated, ChecksFailed, InstanceError,
               DemoUnavailable, NoTables, NotAQuery, ReportError, InitError)


def _report(outcome: RunOutcome) -> None:
    """Warnings, then the streams whose sync stopped early (which fail the command)."""
    for line in outcome.warnings:
        click.echo(f"warning: {line}", err=True)
    for line in outcome.stopped:
        click.echo(f"error: sync stopped early, {line}", err=True)
    if outcome.stopped:
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crm-roi", message="%(prog)s %(version)s")
def cli() -> None:
    """crm-roi: what is your CRM worth? Builds baseline, periodic KPI and rolling ROI tables in DuckDB."""


def tenants_option(command: Callable) -> Callable:
    return click.option("--tenants", "tenants_file", type=click.Path(),
                        help=f"Tenants file or folder of configs (default: ${TENANTS_VARIABLE}).")(command)


def _tenants(tenants_file: str | None) -> Tenants:
    path = tenants_file or os.environ.get(TENANTS_VARIABLE)
    if not path:
        raise click.UsageError(f"no tenants: set {TENANTS_VARIABLE} or pass --tenants")
    return read_tenants(path)


@cli.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Config file (default: $CRM_ROI_CONFIG, else ./crm_roi.yaml).")
@click.option("--tenant", help="Run this tenant of the tenants file, with its own config.")
@tenants_option
@click.option("--full-reload", is_flag=True,
              help="Reload every export file and fully resync every API source (after a correction).")
@click.option("--verbose", "-v", is_flag=True, help="Show Dagster's event log in the terminal too.")
def run(config_file: str | None, tenant: str | None, tenants_file: str | None, full_reload: bool,
        verbose: bool) -> None:
    """Run the nightly job now: load new exports, rebuild staging, KPI and ROI tables."""
    if tenant and config_file:
        raise click.UsageError("give --config or --tenant, not both (a tenant's config is in the tenants file)")
    if tenant:
        tenants = _tenants(tenants_file)
        settings = tenants.settings(tenant)
        outcome = run_nightly(settings, full_reload, verbose, tenant=(tenants, tenant))
    else:
        settings = load_settings(config_file)
        outcome = run_nightly(settings, full_reload, verbose)
    click.echo("\n".join(summary_lines(settings, outcome.files)))
    _report(outcome)


@cli.command("tenants")
@tenants_option
def tenants_command(tenants_file: str | None) -> None:
    """List the tenants with their config and their last nightly run (from the DAGSTER_HOME instance)."""
    tenants = _tenants(tenants_file)
    runs = last_runs(list(tenants.configs))
    rows = [(name, str(config), runs[name].status if name in runs else "never",
             runs[name].ended if name in runs else "") for name, config in tenants.configs.items()]
    click.echo(as_table(["tenant", "config", "last run", "ended (UTC)"], rows))


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the config (default: FOLDER/crm_roi.yaml).")
@click.option("--force", is_flag=True, help="Overwrite the config file if it exists.")
def init(folder: Path, out: Path | None, force: bool) -> None:
    """Write a starter config from the exports in FOLDER, with the column map guessed from their headers."""
    written, lines = write_starter_config(folder, out, force)
    click.echo(f"wrote {written}: every guess is marked 'guessed', what needs you 'TODO'")
    for todo in lines.todos:
        click.echo(f"  TODO {todo}")
    click.echo(f"next: review it, then crm-roi validate --config {written}")


@cli.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Config file (default: $CRM_ROI_CONFIG, else ./crm_roi.yaml).")
def validate(config_file: str | None) -> None:
    """Check the config and the first rows of every export file, writing nothing; exit 1 on an error."""
    findings = preflight(config_file)
    for finding in findings:
        click.echo(str(finding))
    errors = sum(f.level == ERROR for f in findings)
    click.echo(f"{errors} error(s): fix them and validate again" if errors else "no errors: crm-roi run is next")
    if errors:
        sys.exit(1)


@cli.command()
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default="crm_roi_demo.duckdb",
              show_default=True, help="DuckDB file to build.")
@click.option("--live", is_flag=True,
              help="Sync the demo deals and companies from a local fake HubSpot over HTTP instead of files.")
def demo(db_path: str, live: bool) -> None:
    """Run the nightly job on the bundled demo exports (no servers, no credentials)."""
    if live:
        settings, outcome = run_live_demo(Path(db_path), click.echo)
    else:
        settings, outcome = run_demo(Path(db_path))
    click.echo("\n".join(summary_lines(settings, outcome.files)))
    example = "SELECT period_start, roi_pct, payback_reached FROM roi.rolling"
    click.echo(f'\nTry: crm-roi query --db {settings.published_path.name} "{example}"')
    _report(outcome)


def tables_options(command: Callable) -> Callable:
    """`--db FILE | --config FILE`: the file to read, directly or the analysts' copy the config names."""
    command = click.option("--db", "db_path", type=click.Path(dir_okay=False),
                           help="DuckDB file to read directly.")(command)
    return click.option("--config", "config_file", type=click.Path(dir_okay=False),
                        help="Config file naming the DuckDB file (default: $CRM_ROI_CONFIG, else "
                             "./crm_roi.yaml); its analysts' copy is read.")(command)


def _tables_file(db_path: str | None, config_file: str | None) -> Path:
    if db_path and config_file:
        raise click.UsageError("give --db or --config, not both")
    return Path(db_path) if db_path else default_database(config_file)


@cli.command()
@click.argument("sql")
@tables_options
@click.option("--format", "fmt", type=click.Choice(["table", "csv"]), default="table", show_default=True)
def query(sql: str, config_file: str | None, db_path: str | None, fmt: str) -> None:
    """Run one read-only SQL query against the tables and print the result.

    Example: crm-roi query "SELECT period_start, roi_pct FROM roi.rolling"
    """
    columns, rows = run_query(_tables_file(db_path, config_file), sql)
    if fmt == "csv":
        write_csv(sys.stdout, columns, rows)
    else:
        click.echo(as_table(columns, rows))


@cli.command()
@tables_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for the page and the PNGs (default: <name>_report beside the DuckDB file).")
def report(config_file: str | None, db_path: str | None, out_dir: str | None) -> None:
    """Write the ROI report: one HTML page that opens offline, and a PNG per chart."""
    published = _tables_file(db_path, config_file)
    files = write_report(published, Path(out_dir) if out_dir else default_report_dir(published))
    click.echo(f"report   {files.html}")
    click.echo(f"charts   {len(files.images)} PNGs in {files.html.parent}")


@cli.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False))
@tables_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="xlsx", show_default=True,
              help="xlsx: the KPI and ROI tables and the assumptions in one workbook; parquet, csv: every "
                   "table of the analysts' copy, a file each.")
def export_command(out_dir: str, config_file: str | None, db_path: str | None, fmt: Format) -> None:
    """Write the tables for finance into OUT_DIR: a workbook, or one file per table."""
    for path in export(_tables_file(db_path, config_file), Path(out_dir), fmt):
        click.echo(str(path))


@cli.command()
@tables_options
@click.option("--format", "fmt", type=click.Choice(["table", "csv"]), default="table", show_default=True)
def diff(config_file: str | None, db_path: str | None, fmt: str) -> None:
    """List what the last run changed in periods already complete (a restated month) since the run before."""
    columns, rows = changes(_tables_file(db_path, config_file))
    if not rows:
        click.echo("no complete period changed between the last two runs")
    elif fmt == "csv":
        write_csv(sys.stdout, columns, rows)
    else:
        click.echo(as_table(columns, rows))


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except USER_ERRORS as exc:
        notes = "".join(f" ({note})" for note in getattr(exc, "__notes__", ()))
        click.echo(f"error: {exc}{notes}", err=True)
        sys.exit(1)
    except duckdb.Error as exc:
        click.echo(f"error: {str(exc).splitlines()[0]}", err=True)
        sys.exit(1)
