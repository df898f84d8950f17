"""Read one export file into canonical, still-textual columns.

DuckDB's CSV reader does the reading (streamed, parallel, no Python loop over
rows). Every value lands as text exactly as exported, except that a profile's
non-ISO dates are rewritten to ISO 8601 so one parser in staging serves all
CRMs; a value that does not match any of the profile's formats lands unchanged
and is rejected, with its reason, in staging.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass
from pathlib import Path

from connectors.contract import CANONICAL_STREAMS, DATE, TIMESTAMP
from connectors.files.profiles import FOOTER_PATTERN, Profile

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
    import csv

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


def _quote(identifier: str) -> str:
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


def _coalesce(headers: list[str]) -> str:
    """The first non-empty value among the headers present for one canonical column."""
    if not headers:
        return "NULL"
    values = [f"nullif(trim({_quote(h)}), '')" for h in headers]
    return values[0] if len(values) == 1 else f"coalesce({', '.join(values)})"


def _typed_text(column: str, kind: str, headers: list[str], profile: Profile, zoned: bool) -> str:
    """One canonical column as text: non-ISO dates rewritten to ISO, local times zoned."""
    value = _coalesce(headers)
    if value == "NULL" or kind not in (TIMESTAMP, DATE):
        return value
    if profile.date_formats:
        value = f"coalesce(iso_from_formats({value}, $date_formats), {value})"
    if zoned and kind == TIMESTAMP:
        value = f"local_to_utc_iso({value}, $timezone)"
    return value


def landing_query(
    path: Path, fmt: FileFormat, stream: str, profile: Profile, default_currency: str, timezone: str
) -> tuple[str, dict]:
    """The SELECT that turns one export file into the stream's canonical text columns.

    Returns SQL with named parameters and their values: paths, stage lists and
    formats are bound, and headers are quoted identifiers checked against the
    file's own header line, so no value from a file or config is spliced into SQL.
    """
    accepted = profile.headers_for(stream)
    header = set(fmt.header)
    present = {col: [h for h in heads if h in header] for col, heads in accepted.items()}
    status = _coalesce(present.get(profile.status_column, []))
    derive_flags = stream == "deals" and not (present["is_closed"] and present["is_won"])
    for col in CANONICAL_STREAMS[stream].required:
        derivable = col in ("is_closed", "is_won") and derive_flags and status != "NULL"
        if not present.get(col) and not (derivable and profile.won_values):
            wanted = " or ".join(f"'{h}'" for h in accepted[col])
            raise ExportFileError(
                f"{path.name}: column {wanted} ({stream}.{col}) is missing; "
                f"the file has: {', '.join(fmt.header) or 'no header'}"
            )

    params: dict = {"path": str(path), "delim": fmt.delimiter, "encoding": fmt.encoding}
    if profile.date_formats:
        params["date_formats"] = list(profile.date_formats)
    if timezone != "UTC":
        params["timezone"] = timezone
    columns = {
        col: _typed_text(col, kind, present.get(col, []), profile, timezone != "UTC")
        for col, kind in CANONICAL_STREAMS[stream].columns.items()
    }
    if stream in ("deals", "finance_gl") and not present["currency"]:
        params["default_currency"] = default_currency
        columns["currency"] = "$default_currency"
    if derive_flags:
        params |= {"won": list(profile.won_values), "lost": list(profile.lost_values)}
        won = f"list_contains($won, {status})"
        lost = f"list_contains($lost, {status})"
        columns["is_closed"] = f"CASE WHEN {status} IS NULL THEN NULL WHEN {won} OR {lost} THEN 'true' ELSE 'false' END"
        columns["is_won"] = f"CASE WHEN {status} IS NULL THEN NULL WHEN {won} THEN 'true' ELSE 'false' END"
        if profile.deleted_values and not present["is_deleted"]:
            params["deleted"] = list(profile.deleted_values)
            columns["is_deleted"] = f"CASE WHEN list_contains($deleted, {status}) THEN 'true' END"

    # The dialect is known (sniffed above), so DuckDB's own sniffer is off and the columns
    # are the header's: a damaged file then fails with the line and the reason ("unterminated
    # quote", "expected 14 columns, found 5") instead of "could not detect the dialect".
    names = _column_names(path, fmt.header, {h for heads in present.values() for h in heads})
    params["columns"] = dict.fromkeys(names, "VARCHAR")
    select = ", ".join(f"{expr} AS {col}" for col, expr in columns.items())
    all_empty = " AND ".join(f"{_quote(h)} IS NULL" for h in names)
    where = f"NOT ({all_empty})"
    padding = ""
    if profile.has_footer:
        first = _quote(names[0])
        rest_empty = " AND ".join(f"{_quote(h)} IS NULL" for h in names[1:]) or "TRUE"
        params["footer"] = FOOTER_PATTERN
        where += f" AND NOT (coalesce(regexp_full_match({first}, $footer), false) AND {rest_empty})"
        padding = "null_padding = true, parallel = false, "
    # Headers are quoted identifiers checked against the file's header line; values are bound.
    sql = (
        f"SELECT {select} FROM read_csv($path, delim = $delim, encoding = $encoding, "  # noqa: S608
        f"header = true, auto_detect = false, columns = $columns, {padding}"
        "quote = '\"', escape = '\"', "
        f"max_line_size = {MAX_LINE_BYTES}, buffer_size = {2 * MAX_LINE_BYTES}) WHERE {where}"
    )
    return sql, params
