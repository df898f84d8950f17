"""Read one export file into the stream's canonical, typed columns.

DuckDB's CSV reader does the reading (streamed, parallel, no Python loop over
rows). Headers are matched ignoring case, spaces and punctuation. Each value is
taken as text as exported, trimmed, with non-ISO dates rewritten to ISO 8601 (in
the formats decided for the file, see dates.py) and a composite key hashed into
one, and is then parsed once, in the same pass, by the shared parsers
(connectors/contract.py::typed_rows): a value that parses nowhere keeps its
row's text beside it and is rejected, with its reason, in staging.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from connectors.contract import CANONICAL_STREAMS, DATE, NUMBER, TIMESTAMP, typed_rows
from connectors.files.profiles import FOOTER_PATTERN, Profile, normalise_header
from connectors.files.synonyms import synonyms

SNIFF_BYTES = 1 << 16
DELIMITERS = (",", ";", "\t", "|")
# A line (a row, with its quoted multi-line fields) may be up to 16 MB. The read buffer is
# set explicitly: DuckDB's default is 16 lines' worth (256 MB per buffer, several in flight),
# which made a large file cost ~1 GB of memory; 32 MB buffers keep the read streamed.
MAX_LINE_BYTES = 16 << 20


class ExportFileError(ValueError):
    """An export file that cannot be read as the profile expects; the message names the file."""


@dataclass(frozen=True)
class FileFormat:
    delimiter: str
    encoding: str
    header: tuple[str, ...]


def sha256_of(path: Path) -> str:
    """Content hash, streamed, so a re-delivered file is recognised without reading it into memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sniff(path: Path) -> FileFormat:
    """Detect encoding and delimiter from the head of the file."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.strip():
        raise ExportFileError(f"{path.name}: the file is empty")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, text = "utf-16", head.decode("utf-16", errors="ignore")
    elif b"\x00" in head:
        # UTF-8 text never holds NUL; every other byte NUL is UTF-16 saved without its BOM.
        kind = "UTF-16 without a byte-order mark" if _looks_utf16(head) else "binary (NUL bytes)"
        raise ExportFileError(f"{path.name}: not UTF-8, looks like {kind}; re-export it as UTF-8")
    else:
        encoding = "utf-8"
        try:
            text = head.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            if len(head) == SNIFF_BYTES and exc.start >= SNIFF_BYTES - 4:
                text = head[: exc.start].decode("utf-8-sig")
            else:
                raise ExportFileError(
                    f"{path.name}: not UTF-8 (byte {exc.start}); re-export it as UTF-8"
                ) from None
    first_line = text.splitlines()[0] if text.splitlines() else ""
    delimiter = max(DELIMITERS, key=first_line.count)
    if first_line.count(delimiter) == 0:
        delimiter = ","
    header = tuple(_split_header(first_line, delimiter))
    return FileFormat(delimiter=delimiter, encoding=encoding, header=header)


def _looks_utf16(head: bytes) -> bool:
    """Mostly-ASCII UTF-16 text: the NULs sit at the odd (LE) or even (BE) byte offsets."""
    sample = head[:4096]
    halves = sample[0::2].count(0), sample[1::2].count(0)
    return max(halves) >= len(sample) // 4 and min(halves) <= max(halves) // 10


def _split_header(line: str, delimiter: str) -> list[str]:
    return [h.strip() for h in next(csv.reader([line], delimiter=delimiter))]


def _column_names(path: Path, header: tuple[str, ...], used: set[str]) -> list[str]:
    """One unique name per column of the file, in order. A blank or repeated header that
    is not read keeps a placeholder name; a repeated header that is read is ambiguous."""
    names: list[str] = []
    for position, name in enumerate(header, start=1):
        if header.count(name) > 1 and name in used:
            raise ExportFileError(
                f"{path.name}: column '{name}' appears {header.count(name)} times; "
                "keep one and re-export"
            )
        names.append(name if name and header.count(name) == 1 else f"_column_{position}")
    return names


def find_header(path: Path, wanted: str, header: tuple[str, ...]) -> str | None:
    """The file's header that is `wanted`, ignoring case, spaces and punctuation (an exact match first)."""
    if wanted in header:
        return wanted
    hits = sorted({h for h in header if normalise_header(h) == normalise_header(wanted)})
    if len(hits) > 1:
        raise ExportFileError(
            f"{path.name}: columns {' and '.join(repr(h) for h in hits)} both match '{wanted}'; "
            "rename or drop one"
        )
    return hits[0] if hits else None


def closest_header(wanted: tuple[str, ...], header: tuple[str, ...]) -> str | None:
    """The file's header most like any of `wanted` (normalised), for a "did you mean" hint."""
    by_form = {normalise_header(h): h for h in header if normalise_header(h)}
    scored = [
        (difflib.SequenceMatcher(None, normalise_header(w), form).ratio(), form)
        for w in wanted for form in difflib.get_close_matches(normalise_header(w), by_form, n=1, cutoff=0.6)
    ]
    return by_form[max(scored)[1]] if scored else None


@dataclass(frozen=True)
class ExportFile:
    """One export file as a stream will read it: its dialect and which headers feed which column."""

    path: Path
    stream: str
    profile: Profile
    format: FileFormat
    present: dict[str, list[str]]  # canonical column -> the file's headers, first non-empty wins
    composite: dict[str, tuple[str, ...]]  # key column -> the headers whose values make the key

    @property
    def date_headers(self) -> dict[str, str]:
        """The file's headers read as dates or timestamps, with their canonical column."""
        kinds = CANONICAL_STREAMS[self.stream].columns
        return {h: col for col, heads in self.present.items() if kinds.get(col) in (DATE, TIMESTAMP) for h in heads}

    def rows_sql(self) -> tuple[str, dict]:
        """`FROM read_csv(...) WHERE ...`: the file's data rows, every column as text, and its parameters.

        The dialect is known (sniffed), so DuckDB's own sniffer is off and the columns are the
        header's: a damaged file then fails with the line and the reason ("unterminated quote",
        "expected 14 columns, found 5") instead of "could not detect the dialect".
        """
        used = {h for heads in (*self.present.values(), *self.composite.values()) for h in heads}
        names = _column_names(self.path, self.format.header, used)
        params: dict = {"path": str(self.path), "delim": self.format.delimiter, "encoding": self.format.encoding,
                        "columns": dict.fromkeys(names, "VARCHAR")}
        where = "NOT (" + " AND ".join(f"{quote_identifier(h)} IS NULL" for h in names) + ")"
        padding = ""
        if self.profile.has_footer:
            first = quote_identifier(names[0])
            rest_empty = " AND ".join(f"{quote_identifier(h)} IS NULL" for h in names[1:]) or "TRUE"
            params["footer"] = FOOTER_PATTERN
            where += f" AND NOT (coalesce(regexp_full_match({first}, $footer), false) AND {rest_empty})"
            padding = "null_padding = true, parallel = false, "
        sql = (
            "FROM read_csv($path, delim = $delim, encoding = $encoding, header = true, auto_detect = false, "
            f"columns = $columns, {padding}quote = '\"', escape = '\"', "
            f"max_line_size = {MAX_LINE_BYTES}, buffer_size = {2 * MAX_LINE_BYTES}) WHERE {where}"
        )
        return sql, params


def read_export(path: Path, stream: str, profile: Profile, complete: bool = True) -> ExportFile:
    """Sniff `path` and match its headers to the stream's columns; a missing required one is an error
    (unless not `complete`: `crm-roi init` reads what it can of a file it is still mapping)."""
    fmt = sniff(path)
    accepted = profile.headers_for(stream)
    present: dict[str, list[str]] = {}
    for col, heads in accepted.items():
        found = (find_header(path, h, fmt.header) for h in heads)
        present[col] = list(dict.fromkeys(h for h in found if h))
    composite: dict[str, tuple[str, ...]] = {}
    for col, parts in profile.composite.items():
        if col not in CANONICAL_STREAMS[stream].columns:
            continue
        for part in parts:
            if not find_header(path, part, fmt.header):
                raise _missing(path, fmt, stream, col, (part,), f"part of {stream}.{col}'s key")
        composite[col] = tuple(find_header(path, part, fmt.header) for part in parts)
    export = ExportFile(path, stream, profile, fmt, present, composite)
    if complete:
        _require(export)
    return export


def _require(export: ExportFile) -> None:
    """Every required column of the stream is present (is_closed/is_won may come from the stage)."""
    path, stream, profile, fmt, present = export.path, export.stream, export.profile, export.format, export.present
    accepted = profile.headers_for(stream)
    derive_flags = stream == "deals" and not (present["is_closed"] and present["is_won"])
    status = present.get(profile.status_column)
    if derive_flags and status and not profile.won_values and profile.name == "custom":
        raise ExportFileError(
            f"{path.name}: no is_closed and is_won columns, so whether a deal is won comes from "
            f"'{status[0]}': list the values that mean won in won_stages (and lost in lost_stages)"
        )
    for col in CANONICAL_STREAMS[stream].required:
        derivable = col in ("is_closed", "is_won") and derive_flags and status and profile.won_values
        if not present.get(col) and col not in export.composite and not derivable:
            raise _missing(path, fmt, stream, col, accepted[col], f"{stream}.{col}")


def _missing(path: Path, fmt: FileFormat, stream: str, col: str, wanted: tuple[str, ...], what: str) -> ExportFileError:
    """A required column not found, with the header that comes closest: one known to hold the
    column in other exports (as `crm-roi init` would guess it), else the most similar name."""
    names = " or ".join(f"'{h}'" for h in wanted)
    known = {normalise_header(h) for h in synonyms(stream).get(col, ())}
    near = next((h for h in fmt.header if normalise_header(h) in known), None) or closest_header(wanted, fmt.header)
    hint = f"; did you mean '{near}'?" if near else ""
    return ExportFileError(
        f"{path.name}: column {names} ({what}) is missing; the file has: {', '.join(fmt.header) or 'no header'}{hint}"
    )


def quote_identifier(identifier: str) -> str:
    """Quote a header as a SQL identifier; headers come from files, so never trust them."""
    return '"' + identifier.replace('"', '""') + '"'


def csv_error_message(path: Path, error: Exception) -> str:
    """DuckDB's CSV error, cut to the line and the reason, naming the file."""
    lines = [ln.strip().removeprefix("Invalid Input Error: ") for ln in str(error).splitlines()
             if ln.strip()]
    where = next((ln for ln in lines if ln.startswith("CSV Error on Line")), lines[0] if lines else "")
    if "not utf-8 encoded" in str(error):
        return f"{path.name}: not UTF-8 ({where}); re-export it as UTF-8"
    reason = next(
        (ln for ln in lines[1:] if not ln.startswith(("Original Line", "Possible Solution", "file =")))
        , "")
    return f"{path.name}: cannot be read as CSV: {where}" + (f" ({reason})" if reason else "")


def _text(header: str) -> str:
    return f"nullif(trim({quote_identifier(header)}), '')"


def composite_key(headers: tuple[str, ...]) -> str:
    """A key from several columns: the first 32 hex digits of SHA-256 over their trimmed values
    joined by U+001F (an empty value as ''); NULL when every value is empty."""
    values = ", ".join(f"coalesce({_text(h)}, '')" for h in headers)
    any_value = " OR ".join(f"{_text(h)} IS NOT NULL" for h in headers)
    return f"CASE WHEN {any_value} THEN left(sha256(concat_ws(chr(31), {values})), 32) END"


def landing_query(
    export: ExportFile,
    date_formats: dict[str, tuple[str, ...]],
    default_currency: str,
    timezone: str,
    limit: int | None = None,
    decimal_comma: bool = False,
) -> tuple[str, dict]:
    """The SELECT that turns one export file into the stream's canonical typed columns and `_text`.

    `date_formats`: per date header, the strptime formats its non-ISO values are rewritten
    to ISO 8601 with (connectors/files/dates.py decides them); a value none fits keeps its
    text and is rejected, with its reason, in staging. `decimal_comma`: numbers written
    `1.234,50` are rewritten to `1234.50` the same way. `limit`: the first rows only.
    Returns SQL with named parameters and their values: paths, stage lists and formats
    are bound, and headers are quoted identifiers checked against the file's own header
    line, so no value from a file or config is spliced into SQL.
    """
    rows, params = export.rows_sql()
    profile, present, kinds = export.profile, export.present, CANONICAL_STREAMS[export.stream].columns
    zoned = timezone != "UTC"
    if zoned:
        params["timezone"] = timezone
    columns: dict[str, str] = {}
    for col, kind in kinds.items():
        values = []
        for header in present.get(col, []):
            value = _text(header)
            if date_formats.get(header):
                name = f"formats_{len(params)}"
                params[name] = list(date_formats[header])
                value = f"coalesce(iso_from_formats({value}, ${name}), {value})"
            elif decimal_comma and kind == NUMBER:
                value = f"coalesce(decimal_comma_to_point({value}), {value})"
            values.append(value)
        if col in export.composite:
            columns[col] = composite_key(export.composite[col])
        elif values:
            expr = values[0] if len(values) == 1 else f"coalesce({', '.join(values)})"
            columns[col] = f"local_to_utc_iso({expr}, $timezone)" if zoned and kind == TIMESTAMP else expr
    if export.stream in ("deals", "finance_gl") and not present["currency"]:
        params["default_currency"] = default_currency
        columns["currency"] = "$default_currency"
    status_values = [_text(h) for h in present.get(profile.status_column, [])]
    status = f"coalesce({', '.join(status_values)})" if status_values else "NULL"
    if export.stream == "deals" and not (present["is_closed"] and present["is_won"]):
        params |= {"won": list(profile.won_values), "lost": list(profile.lost_values)}
        won = f"list_contains($won, {status})"
        lost = f"list_contains($lost, {status})"
        columns["is_closed"] = f"CASE WHEN {status} IS NULL THEN NULL WHEN {won} OR {lost} THEN 'true' ELSE 'false' END"
        columns["is_won"] = f"CASE WHEN {status} IS NULL THEN NULL WHEN {won} THEN 'true' ELSE 'false' END"
        if profile.deleted_values and not present["is_deleted"]:
            params["deleted"] = list(profile.deleted_values)
            columns["is_deleted"] = f"CASE WHEN list_contains($deleted, {status}) THEN 'true' END"
    if limit is not None:
        rows += f" LIMIT {int(limit)}"
    # Headers are quoted identifiers checked against the file's header line; values are bound.
    return typed_rows(export.stream, columns, rows), params
