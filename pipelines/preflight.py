"""`crm-roi validate`: check a config and its export files without writing anything.

A new user's first run should not be the way to find a typo in a header or a
day-first date. This reads the config, matches every file's headers against its
profile and column map, decides each date column's day/month order, and runs the
first rows of each file through landing, the staging row rules and the staging
checks a run would fail on, all in an in-memory DuckDB: no DuckDB file is created
or touched, and nothing else is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb

from connectors.contract import CANONICAL_STREAMS
from connectors.files.profiles import normalise_header
from connectors.files.reader import ExportFileError
from pipelines.checks import run_checks
from pipelines.config import ConfigError, Settings, config_path, load_settings
from pipelines.models import REGISTRY
from pipelines.raw_files import (
    Landed,
    land_file,
    required_streams_present,
    stream_inputs,
    unmatched_files,
    unmatched_message,
)
from pipelines.transform import build_staging
from pipelines.warehouse import in_memory

SAMPLE_ROWS = 1000
# fx rates are read in full: whether a deal or GL line has a rate depends on all of them.
READ_IN_FULL = ("fx_rates",)
OK, NOTE, WARN, ERROR = "ok", "note", "warn", "error"


@dataclass(frozen=True)
class Finding:
    level: str  # OK, NOTE, WARN or ERROR
    subject: str  # the config file, or 'stream file'
    text: str

    def __str__(self) -> str:
        return f"{self.level:<5}  {self.subject}: {self.text}"


def _todos(file: Path) -> list[int]:
    """The lines of the config still carrying a TODO (as `crm-roi init` writes them)."""
    return [n for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1) if "TODO:" in line]


def _file_summary(landed: Landed) -> str:
    """Which header feeds which column where it is not the canonical name, and how dates are read."""
    export = landed.export
    mapped = [f"{col}={'+'.join(heads)}" for col, heads in export.composite.items()]
    mapped += [f"{col}={heads[0]}" for col, heads in export.present.items()
               if heads and col in CANONICAL_STREAMS[export.stream].columns
               and normalise_header(heads[0]) != normalise_header(col)]
    dates = [f"{d.header} {d.order} (from the {d.decided_by.replace('_', ' ')})"
             for d in landed.dates.values() if d.order]
    return (f"columns {', '.join(mapped)}" if mapped else "canonical headers") + (
        f"; dates {', '.join(dates)}" if dates else "")


def _lines(numbers: list[int]) -> str:
    return ("line " if len(numbers) == 1 else "lines ") + ", ".join(map(str, numbers))


def _shown(path: Path) -> str:
    """A path as the user would type it from here."""
    return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)


def _land_samples(con: duckdb.DuckDBPyConnection, settings: Settings) -> tuple[list[Finding], dict]:
    """Land the first rows of every file; returns findings and, per (stream, source, file name),
    the subject to report it under and the rows read."""
    findings: list[Finding] = []
    landed: dict[tuple[str, str, str], tuple[str, int]] = {}
    for stream in CANONICAL_STREAMS:
        try:
            inputs = stream_inputs(settings, stream)
        except ExportFileError as exc:
            findings.append(Finding(ERROR, stream, str(exc)))
            continue
        for spec in inputs:
            for path in spec.files:
                subject = f"{stream} {_shown(path)}"
                try:
                    result = land_file(con, spec, path, limit=None if stream in READ_IN_FULL else SAMPLE_ROWS)
                except ExportFileError as exc:
                    findings.append(Finding(ERROR, subject, str(exc).removeprefix(f"{path.name}: ")))
                    continue
                landed[(stream, spec.source, path.name)] = (subject, result.rows)
                findings.append(Finding(OK, subject, _file_summary(result)))
    return findings, landed


def _checks(con: duckdb.DuckDBPyConnection, settings: Settings) -> list[Finding]:
    """Stage the sampled rows and run the staging checks a run runs on them (Pandera, rejected share):
    a blocking one that fails would stop the run, so it is an error here."""
    findings = []
    for spec in REGISTRY.staging:
        build_staging(con, spec.short_name)
        for result in run_checks(con, spec, settings.rejected_share_limits()):
            if not result.passed:
                level = ERROR if result.severity == dg.AssetCheckSeverity.ERROR else WARN
                message = str(result.metadata["message"].value).removeprefix(f"{spec.name}: ")
                findings.append(Finding(level, spec.name, message))
    return findings


def _row_rules(con: duckdb.DuckDBPyConnection, landed: dict) -> list[Finding]:
    """Per file, what the row rules would quarantine of the rows read (and on which lines)."""
    reasons: dict[tuple[str, str, str], list[str]] = {}
    for table, source, name, rule, count, lines in con.execute(
        "SELECT table_name, source, file_name, rule, count(*), list(row_number + 1 ORDER BY row_number)[1:3] "
        "FROM (SELECT table_name, source, file_name, row_number, unnest(string_split(reason, '; ')) AS rule "
        "FROM quarantine.rejected_rows) GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        reasons.setdefault((table, source, name), []).append(f"{rule} ({count}, {_lines(lines)})")
    rejected = {(t, s, n): c for t, s, n, c in con.execute(
        "SELECT table_name, source, file_name, count(*) FROM quarantine.rejected_rows GROUP BY ALL").fetchall()}
    findings = []
    for key, (subject, rows) in landed.items():
        read = f"{rows:,} rows read" + (" (the first ones)" if rows == SAMPLE_ROWS else "")
        bad = rejected.get(key, 0)
        if not bad:
            findings.append(Finding(OK, subject, f"{read}, none would be quarantined"))
        else:
            level, share = (ERROR, "every one") if bad == rows else (WARN, f"{bad:,}")
            findings.append(Finding(level, subject, f"{read}, {share} would be quarantined: "
                                                    f"{'; '.join(reasons[key])}"))
    return findings


def preflight(config_file: str | Path | None = None) -> list[Finding]:
    """Everything `crm-roi validate` reports, in order; any ERROR means a run would fail or mislead."""
    file = config_path(config_file)
    try:
        settings = load_settings(file)
    except ConfigError as exc:
        return [Finding(ERROR, str(file), str(exc).removeprefix(f"{file}: "))]
    sources = [s.kind for s in settings.sources]
    findings = [Finding(OK, str(file), f"valid: sources {', '.join(sources)}, and finance")]
    if todos := _todos(file):
        findings.append(Finding(NOTE, str(file), f"TODO left on {_lines(todos)}"))
    findings += [Finding(NOTE, name, "a live API source: not contacted by validate") for name, _ in
                 settings.api_sources()]
    findings += [Finding(NOTE, source, unmatched_message(source, names).removeprefix(f"{source}: "))
                 for source, names in unmatched_files(settings).items()]
    try:
        required_streams_present(settings)
    except ExportFileError as exc:
        return [*findings, Finding(ERROR, "deals", str(exc))]
    with in_memory(settings) as con:
        landing, landed = _land_samples(con, settings)
        if any(f.level == ERROR for f in landing):
            return findings + landing
        checks = _checks(con, settings)
        rows = _row_rules(con, landed)
    # Each file's columns and dates, then what its rows would give; then the checks that would fail.
    return findings + [f for pair in zip(landing, rows, strict=True) for f in pair] + checks
