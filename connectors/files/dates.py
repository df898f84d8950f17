"""Day first or month first: decided for each date column of each export file, from its values.

'06/07/2025' is 6 July in most of the world and June 7 in the US, and a CRM writes
dates in its user's locale. Formats tried in order read every day of 12 or less
month-first and reject the rest, so here the order is never assumed: a value whose
day is above 12 settles it for its column; a column whose values all read either
way takes the source's `date_format` or `dayfirst`; without one, and for a column
holding both orders, loading stops with one line naming the file, the column and
what to do. ISO 8601 values (YYYY-MM-DD...) are never ambiguous and are left to
staging's parser.

The decision is one DuckDB scan of the file grouping each date column's values by
shape (which order they can be read in, separator, year width, time part), so it
costs one pass and no Python loop over rows, and it returns per column the strptime
formats landing rewrites values with (one per shape found, typically one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from connectors.files.reader import ExportFile, ExportFileError, quote_identifier

DAY_FIRST, MONTH_FIRST, MIXED = "day first", "month first", "both orders"
# The date part of a value written day/month/year or month/day/year (a time may follow a space).
DAY_MONTH_PATTERN = r"^(\d{1,2})([/.-])(\d{1,2})[/.-](\d{4}|\d{2})$"
# The time part of such a value, digits as 9 and AM/PM as P -> its strptime format.
TIME_FORMATS = {
    "": "", " 9:9": " %H:%M", " 9:9:9": " %H:%M:%S", " 9:9 P": " %I:%M %p", " 9:9:9 P": " %I:%M:%S %p",
}


class DateOrderError(ExportFileError):
    """A date column whose day/month order cannot be known, or holds both orders; names file, column and fix."""


@dataclass(frozen=True)
class DateSetting:
    """A source's `date_format` / `dayfirst`, and where they live in the config (for messages)."""

    key: str
    date_format: str | None = None
    dayfirst: bool | None = None

    @property
    def order(self) -> str | None:
        if self.dayfirst is not None:
            return DAY_FIRST if self.dayfirst else MONTH_FIRST
        return format_order(self.date_format)

    @property
    def configured(self) -> bool:
        return self.date_format is not None or self.dayfirst is not None


def format_order(date_format: str | None) -> str | None:
    """The order a strptime format writes day and month in; None without a numeric day and month."""
    if not date_format or "%d" not in date_format or "%m" not in date_format:
        return None
    return DAY_FIRST if date_format.index("%d") < date_format.index("%m") else MONTH_FIRST


def shape_format(separator: str, year_digits: int, time: str, order: str) -> str | None:
    """The strptime format of one day/month shape read in `order`; None for a time part not known."""
    if time not in TIME_FORMATS:
        return None
    first, second = ("%d", "%m") if order == DAY_FIRST else ("%m", "%d")
    year = "%Y" if year_digits == 4 else "%y"
    return f"{first}{separator}{second}{separator}{year}{TIME_FORMATS[time]}"


@dataclass
class DateSurvey:
    """What one date column of a file holds: values per kind, an example of each, the day/month shapes."""

    header: str
    counts: dict[str, int] = field(default_factory=dict)  # iso, day_first, month_first, either, other
    examples: dict[str, str] = field(default_factory=dict)
    shapes: dict[tuple[str, int, str], int] = field(default_factory=dict)  # (separator, year digits, time)

    @property
    def day_month(self) -> int:
        return sum(self.counts.get(kind, 0) for kind in ("day_first", "month_first", "either"))

    @property
    def values_order(self) -> str | None:
        """The order the values settle: DAY_FIRST, MONTH_FIRST, MIXED, or None (all read either way)."""
        day, month = self.counts.get("day_first", 0), self.counts.get("month_first", 0)
        if day and month:
            return MIXED
        return DAY_FIRST if day else MONTH_FIRST if month else None

    @property
    def example(self) -> str | None:
        return next((self.examples[k] for k in ("day_first", "month_first", "either") if k in self.examples), None)

    def date_format(self, order: str) -> str:
        """The date part of the commonest shape in `order`, as a `date_format` to configure."""
        separator, year_digits, _ = max(self.shapes, key=self.shapes.get) if self.shapes else ("/", 4, "")
        return (shape_format(separator, year_digits, "", order) or "").strip()


@dataclass(frozen=True)
class ColumnDates:
    """How one date column of one file is read: its order, what decided it, the formats to try."""

    header: str
    column: str
    order: str | None  # DAY_FIRST, MONTH_FIRST, or None when no day/month value is read
    decided_by: str  # 'values', 'date_format', 'dayfirst' or ''
    formats: tuple[str, ...]  # strptime formats for non-ISO values, tried in order


def _classified(values_sql: str, grouped: bool) -> str:
    """SQL: the non-empty values of `values_sql` (columns h, v, line), each with its kind and shape.

    A value's date part and the digits-as-9 of its time part are plain string operations;
    `grouped` counts the rows per (column, date part, time part) first, so the regular
    expressions run over a few thousand distinct dates rather than every row. ISO values
    skip all of it. The SQL is this module's own fragments; values and patterns are bound.
    """
    parts = f"""
        SELECT h, v, line,
               CASE WHEN v NOT LIKE '____-%' THEN split_part(v, ' ', 1) END AS d,
               CASE WHEN v NOT LIKE '____-%' THEN
                   translate(substr(v, strlen(split_part(v, ' ', 1)) + 1), '0123456789', '9999999999') END AS rest
        FROM ({values_sql}) WHERE v <> ''"""  # noqa: S608
    if grouped:
        # An ISO value's example is never shown: not comparing millions of them halves the scan's overhead.
        parts = (f"SELECT h, d, rest, count(*) AS n, min(v) FILTER (WHERE d IS NOT NULL) AS v, NULL AS line "  # noqa: S608
                 f"FROM ({parts}) GROUP BY ALL")
    else:
        parts = f"SELECT h, d, rest, 1 AS n, v, line FROM ({parts})"  # noqa: S608
    return f"""
    WITH p AS (SELECT *, regexp_extract(d, $day_month, ['a', 'sep', 'b', 'y']) AS m FROM ({parts})),
    n AS (SELECT *, TRY_CAST(m.a AS INTEGER) AS a, TRY_CAST(m.b AS INTEGER) AS b FROM p)
    SELECT h, v, line, n,
           CASE WHEN d IS NULL THEN 'iso'
                WHEN a BETWEEN 13 AND 31 AND b BETWEEN 1 AND 12 THEN 'day_first'
                WHEN b BETWEEN 13 AND 31 AND a BETWEEN 1 AND 12 THEN 'month_first'
                WHEN a BETWEEN 1 AND 12 AND b BETWEEN 1 AND 12 THEN 'either'
                ELSE 'other' END AS kind,
           m.sep AS sep, length(m.y) AS year_digits,
           regexp_replace(regexp_replace(upper(rest), '9+', '9', 'g'), '\\s*[AP]\\.?M\\.?$', ' P') AS time
    FROM n"""  # noqa: S608


def survey_dates(con: duckdb.DuckDBPyConnection, export: ExportFile) -> dict[str, DateSurvey]:
    """Each date header of the file surveyed, in one scan of the file."""
    headers = list(export.date_headers)
    if not headers:
        return {}
    rows, params = export.rows_sql()
    pairs = ", ".join(f"{{'h': {i}, 'v': trim({quote_identifier(h)})}}" for i, h in enumerate(headers))
    values = f"SELECT unnest([{pairs}], recursive := true), NULL AS line {rows}"
    found = con.execute(
        f"SELECT h, kind, sep, year_digits, time, sum(n), min(v) FROM ({_classified(values, True)}) "  # noqa: S608
        "GROUP BY ALL",
        {**params, "day_month": DAY_MONTH_PATTERN},
    ).fetchall()
    surveys = {h: DateSurvey(h) for h in headers}
    for index, kind, separator, year_digits, time, count, example in found:
        survey = surveys[headers[index]]
        survey.counts[kind] = survey.counts.get(kind, 0) + count
        survey.examples.setdefault(kind, example)
        if kind in ("day_first", "month_first", "either"):
            shape = (separator, year_digits, time)
            survey.shapes[shape] = survey.shapes.get(shape, 0) + count
    return surveys


def _lines(con: duckdb.DuckDBPyConnection, export: ExportFile, header: str, kind: str) -> list[int]:
    """The first lines (the header is line 1) whose value in `header` is of `kind`: for error messages."""
    rows, params = export.rows_sql()
    values = f"SELECT 0 AS h, trim({quote_identifier(header)}) AS v, row_number() OVER () + 1 AS line {rows}"
    found = con.execute(
        f"SELECT line FROM ({_classified(values, False)}) WHERE kind = $kind ORDER BY line LIMIT 3",  # noqa: S608
        {**params, "day_month": DAY_MONTH_PATTERN, "kind": kind},
    ).fetchall()
    return [line for (line,) in found]


def _on_lines(lines: list[int]) -> str:
    return ("line " if len(lines) == 1 else "lines ") + ", ".join(map(str, lines))


def decide(
    con: duckdb.DuckDBPyConnection, export: ExportFile, survey: DateSurvey, setting: DateSetting
) -> ColumnDates:
    """How to read one surveyed date column; DateOrderError when its order cannot be known."""
    header = survey.header
    column = export.date_headers[header]
    where = f"{export.path.name}: column '{header}' ({export.stream}.{column})"
    extra = (setting.date_format,) if setting.date_format else ()
    year_first = export.profile.date_formats
    if not survey.day_month:
        return ColumnDates(header, column, None, "", (*extra, *year_first))
    example = survey.example
    if not (export.profile.day_month_dates or setting.configured):
        if survey.counts.get("iso"):  # a few odd values among ISO dates: row errors, quarantined
            return ColumnDates(header, column, None, "", year_first)
        raise DateOrderError(
            f"{where}: dates like '{example}' are not ISO 8601 (YYYY-MM-DD), which canonical files use; "
            f"set {setting.key}.date_format (e.g. '{survey.date_format(DAY_FIRST)}' or "
            f"'{survey.date_format(MONTH_FIRST)}') to read them"
        )
    order = survey.values_order
    if order == MIXED:
        day = _lines(con, export, header, "day_first")
        month = _lines(con, export, header, "month_first")
        raise DateOrderError(
            f"{where} has dates in both orders: day first on {_on_lines(day)} (e.g. "
            f"'{survey.examples['day_first']}'), month first on {_on_lines(month)} (e.g. "
            f"'{survey.examples['month_first']}'); correct those rows in the export"
        )
    decided_by = "values"
    if order is not None and setting.order not in (None, order):
        lines = _lines(con, export, header, "day_first" if order == DAY_FIRST else "month_first")
        named = "date_format" if setting.dayfirst is None else "dayfirst"
        raise DateOrderError(
            f"{where}: the dates on {_on_lines(lines)} (e.g. '{example}') can only be {order}, but "
            f"{setting.key}.{named} says {setting.order}; fix {setting.key}.{named} or those rows"
        )
    if order is None:
        if setting.order is None:
            raise DateOrderError(
                f"{where}: every date reads either way (e.g. '{example}'); set {setting.key}.date_format: "
                f"'{survey.date_format(DAY_FIRST)}' (day first) or '{survey.date_format(MONTH_FIRST)}' "
                f"(month first), or {setting.key}.dayfirst: true or false"
            )
        order = setting.order
        decided_by = "date_format" if setting.dayfirst is None else "dayfirst"
    formats = tuple(dict.fromkeys(f for shape in survey.shapes if (f := shape_format(*shape, order))))
    return ColumnDates(header, column, order, decided_by, (*formats, *extra, *year_first))


def decide_dates(
    con: duckdb.DuckDBPyConnection, export: ExportFile, setting: DateSetting
) -> dict[str, ColumnDates]:
    """How each date column of `export` is read, decided before it lands; raises DateOrderError."""
    return {header: decide(con, export, survey, setting) for header, survey in survey_dates(con, export).items()}
