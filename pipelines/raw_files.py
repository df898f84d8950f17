"""Raw ingest of export files: each file loaded once, in name order, in one transaction, typed.

Export folders accumulate (a full snapshot or a delta every night). A file is
recognised by name and content hash: one loaded before is skipped, so re-running
costs nothing and never duplicates a row; one changed since it was loaded is an
error unless a full reload is asked for, because silently replacing history is
how numbers drift without anyone noticing. A file with the size and modification
time it had when loaded is taken as unchanged without hashing it again (as rsync
and make do): hashing every export of a large CRM cost seconds every night.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import duckdb

from connectors.contract import CANONICAL_STREAMS, TEXT_COLUMN
from connectors.files.dates import ColumnDates, DateSetting, decide_dates
from connectors.files.profiles import Profile, resolve_profile
from connectors.files.reader import (
    ExportFile,
    ExportFileError,
    csv_error_message,
    landing_query,
    read_export,
    sha256_of,
)
from pipelines.config import (
    FILE_STREAMS,
    FINANCE_SOURCE,
    FilesSource,
    Settings,
    outside_roots_message,
    within_roots,
)
from pipelines.progress import Tracker, progress, watch_statement
from pipelines.warehouse import transaction


@dataclass(frozen=True)
class StreamInput:
    """Where one stream of one source comes from and how to read it."""

    source: str
    stream: str
    files: tuple[Path, ...]
    profile: Profile
    default_currency: str
    dates: DateSetting
    timezone: str = "UTC"
    decimal_comma: bool = False

    @property
    def read_as(self) -> str:
        """A fingerprint of every setting that changes what a file lands as."""
        profile = dataclasses.replace(self.profile, mapped=tuple(sorted(self.profile.mapped)))  # a set's order varies
        settings = (profile, self.default_currency, self.dates.date_format, self.dates.dayfirst, self.timezone,
                    self.decimal_comma)
        return hashlib.sha256(repr(settings).encode()).hexdigest()[:16]


class _Loaded(NamedTuple):
    """What raw.loaded_files recorded about a file when it was loaded."""

    sha256: str
    size: int
    modified_ns: int | None


@dataclass
class LoadResult:
    files_loaded: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    rows_loaded: int = 0


def _stream_files(source: FilesSource, stream: str, roots: list[Path]) -> tuple[Path, ...]:
    """A stream's files in name order: the configured name, else `<stream>.csv` and `<stream>_*.csv`.

    A symlink in the folder must not smuggle in a file from outside the data roots.
    """
    if stream in source.files:
        pattern = source.files[stream]
        if pattern is None:
            return ()
        found = sorted(source.path.glob(pattern))
    else:
        found = sorted([*source.path.glob(f"{stream}.csv"), *source.path.glob(f"{stream}_*.csv")],
                       key=lambda p: p.name)
    files = tuple(p for p in found if p.is_file())
    for path in files:
        if not within_roots(path, roots):
            raise ExportFileError(outside_roots_message(f"{stream} file", path.resolve(), roots))
    return files


# What a files source may read: the exports its streams' patterns did not name are worth a warning.
EXPORT_SUFFIXES = (".csv", ".tsv", ".txt")


def unmatched_files(settings: Settings) -> dict[str, list[str]]:
    """Per files source, the export files in its folder that no stream reads.

    A new export named outside the pattern (`Deals export Nov.csv` beside `deals.csv`) would
    otherwise be ignored without a word.
    """
    unmatched = {}
    for name, source in zip(settings.source_names, settings.sources, strict=True):
        if not isinstance(source, FilesSource):
            continue
        read = {p.resolve() for stream in FILE_STREAMS
                for p in _stream_files(source, stream, settings.data_roots or [source.path])}
        read.add(settings.finance.path.resolve())
        extra = sorted(p.name for p in source.path.iterdir()
                       if p.is_file() and p.suffix.lower() in EXPORT_SUFFIXES and p.resolve() not in read)
        if extra:
            unmatched[name] = extra
    return unmatched


def unmatched_message(source: str, names: list[str]) -> str:
    return f"{source}: no stream reads {', '.join(names)} (name a file under the source's files: to load it)"


def stream_inputs(settings: Settings, stream: str) -> list[StreamInput]:
    """Every source that provides `stream`, with its files."""
    if stream == "finance_gl":
        finance = settings.finance
        # A GL with its own headers is read like a custom export; the finance_gl.csv layout is canonical.
        profile = resolve_profile("custom" if finance.columns else "canonical", finance.columns, [], [])
        return [StreamInput(FINANCE_SOURCE, stream, (finance.path,), profile, settings.base_currency,
                            finance.date_setting("finance"), decimal_comma=finance.decimal_separator == ",")]
    inputs = []
    for index, (name, source) in enumerate(zip(settings.source_names, settings.sources, strict=True)):
        if not isinstance(source, FilesSource):
            continue
        files = _stream_files(source, stream, settings.data_roots or [source.path])
        if not files:
            continue
        profile = resolve_profile(source.profile, source.columns, source.won_stages, source.lost_stages)
        currency = source.currency or settings.base_currency
        inputs.append(StreamInput(name, stream, files, profile, currency, source.date_setting(f"sources.{index}"),
                                  source.timezone, decimal_comma=source.decimal_separator == ","))
    return inputs


class Landed(NamedTuple):
    """One file landed: its batch, its rows, how its headers and dates were read."""

    batch_id: int
    rows: int
    export: ExportFile
    dates: dict[str, ColumnDates]


def land_file(
    con: duckdb.DuckDBPyConnection, spec: StreamInput, path: Path, tracker: Tracker | None = None,
    limit: int | None = None,
) -> Landed:
    """Append one file (or its first `limit` rows) to raw.<stream>, its progress on `tracker`.

    The day/month order of its dates is decided from the file first, so a value is never
    read in the wrong order: an undecidable column stops the load, naming file and column.
    """
    tracker = tracker or Tracker(path.name, None, "bytes")
    export = read_export(path, spec.stream, spec.profile)
    try:
        dates = decide_dates(con, export, spec.dates)
    except duckdb.Error as exc:
        raise ExportFileError(csv_error_message(path, exc)) from None
    formats = {header: decided.formats for header, decided in dates.items()}
    select, params = landing_query(export, formats, spec.default_currency, spec.timezone, limit,
                                   decimal_comma=spec.decimal_comma)
    batch_id = con.execute("SELECT nextval('raw.batch_seq')").fetchone()[0]
    columns = ", ".join((*CANONICAL_STREAMS[spec.stream].columns, TEXT_COLUMN))
    try:
        # The stream and its columns come from the contract; values are bound.
        with watch_statement(con, tracker, tracker.completed, path.stat().st_size):
            rows = con.execute(
                f"INSERT INTO raw.{spec.stream} ({columns}, _source, _file, _batch_id, _loaded_at) "  # noqa: S608
                f"SELECT {columns}, $source, $file, $batch, now()::TIMESTAMP FROM ({select})",
                {**params, "source": spec.source, "file": path.name, "batch": batch_id},
            ).fetchone()[0]
    except duckdb.Error as exc:
        raise ExportFileError(csv_error_message(path, exc)) from None
    _check_in_file_order(con, spec.stream, batch_id, rows)
    return Landed(batch_id, rows, export, dates)


def _check_in_file_order(con: duckdb.DuckDBPyConnection, stream: str, batch_id: int, rows: int) -> None:
    """A file's rows hold one run of consecutive row ids, in file order: a row's line is its place in the run.

    DuckDB appends an INSERT's rows in the order of its SELECT (insertion order is preserved),
    so the line of a quarantined row and the later of two tied duplicates follow from row ids.
    Storing each row's line instead cost a rewrite of the whole batch (~2 s per 5M rows at
    commit); numbering in the INSERT (`row_number() OVER ()`) made the scan single-threaded.
    """
    first, last = con.execute(
        f"SELECT min(rowid), max(rowid) FROM raw.{stream} WHERE _batch_id = ?", [batch_id]  # noqa: S608
    ).fetchone()
    if rows and last - first + 1 != rows:
        raise RuntimeError(f"raw.{stream}: batch {batch_id} did not land in one run of row ids")


def _check_rereadable(con: duckdb.DuckDBPyConnection, spec: StreamInput) -> None:
    """Files read under other settings are read again, so each must still be there: a file
    rotated out of the folder would otherwise take its rows with it."""
    present = [p.name for p in spec.files]
    gone = [name for (name,) in con.execute(
        "SELECT file_name FROM raw.loaded_files WHERE source = ? AND stream = ? AND read_as IS DISTINCT FROM ? "
        "AND NOT list_contains(?, file_name) ORDER BY file_name",
        [spec.source, spec.stream, spec.read_as, present],
    ).fetchall()]
    if gone:
        raise ExportFileError(
            f"{spec.source}: its reading settings changed, so its {spec.stream} files are read again, but some "
            f"are no longer in the folder ({', '.join(gone[:3])}{', ...' if len(gone) > 3 else ''}): put them "
            "back, or run with --full-reload to keep only the files there now"
        )


def load_stream(
    con: duckdb.DuckDBPyConnection, spec: StreamInput, full_reload: bool = False
) -> LoadResult:
    """Load the files of one source's stream that are new, all in one transaction."""
    result = LoadResult()
    sizes = {path: path.stat().st_size for path in spec.files}
    with (progress(f"raw/{spec.stream} ({spec.source})", total=sum(sizes.values()), unit="bytes") as tracker,
          transaction(con)):
        if not full_reload:
            _check_rereadable(con, spec)
        read_before = con.execute(
            "SELECT count(*) FROM raw.loaded_files WHERE source = ? AND stream = ? AND read_as IS DISTINCT FROM ?",
            [spec.source, spec.stream, spec.read_as],
        ).fetchone()[0]
        if full_reload or read_before:
            con.execute(f"DELETE FROM raw.{spec.stream} WHERE _source = ?", [spec.source])  # noqa: S608
            con.execute(
                "DELETE FROM raw.loaded_files WHERE source = ? AND stream = ?",
                [spec.source, spec.stream],
            )
        seen = {
            name: _Loaded(*loaded)
            for name, *loaded in con.execute(
                "SELECT file_name, sha256, size_bytes, modified_ns FROM raw.loaded_files "
                "WHERE source = ? AND stream = ?",
                [spec.source, spec.stream],
            ).fetchall()
        }
        for number, path in enumerate(spec.files, start=1):
            tracker.update(tracker.completed, detail=f"file {number} of {len(spec.files)}: {path.name}")
            done = tracker.completed + sizes[path]
            stat = path.stat()
            known = seen.get(path.name)
            if known and (known.size, known.modified_ns) == (stat.st_size, stat.st_mtime_ns):
                result.files_skipped.append(path.name)  # as loaded: same size, not modified since
                tracker.update(done)
                continue
            digest = sha256_of(path)
            if known and known.sha256 == digest:
                # Same content, touched or copied since: remember the new time, skip the hash next run.
                con.execute(
                    "UPDATE raw.loaded_files SET modified_ns = ? WHERE source = ? AND stream = ? AND file_name = ?",
                    [stat.st_mtime_ns, spec.source, spec.stream, path.name],
                )
                result.files_skipped.append(path.name)
                tracker.update(done)
                continue
            if known:
                raise ExportFileError(
                    f"{path.name}: changed since it was loaded; "
                    "export under a new name or run with --full-reload"
                )
            batch_id, rows, *_ = land_file(con, spec, path, tracker)
            con.execute(
                "INSERT INTO raw.loaded_files (source, stream, file_name, sha256, size_bytes, row_count, "
                "batch_id, loaded_at, modified_ns, read_as) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [spec.source, spec.stream, path.name, digest, stat.st_size, rows,
                 batch_id, dt.datetime.now(dt.UTC).replace(tzinfo=None), stat.st_mtime_ns, spec.read_as],
            )
            result.files_loaded.append(path.name)
            result.rows_loaded += rows
            tracker.update(done)
    return result


def required_streams_present(settings: Settings) -> None:
    """Deals must come from some source; finance is required by the config model itself."""
    if not stream_inputs(settings, "deals") and not settings.api_sources():
        folders = ", ".join(str(s.path) for s in settings.sources)
        raise ExportFileError(f"no source provides deals: no deals*.csv (or mapped file) in {folders}")
