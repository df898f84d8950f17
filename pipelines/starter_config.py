"""`crm-roi init FOLDER`: a starter crm_roi.yaml guessed from the exports in a folder.

Bringing an unfamiliar export used to mean writing a column map by hand. Here each
file's headers are matched (normalised) against the synonyms every canonical column
is known by (connectors/files/synonyms.py), which tells which file holds deals,
which the general ledger and so on, and which header holds which column. Nothing is
decided silently: every guess is written with a `# guessed from ...` comment, what
only the user can say is a `TODO`, and the values that help with the rest (the
dates' day/month order, stage values, currencies, GL accounts) are read from the
files with DuckDB, in memory.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from connectors.contract import CANONICAL_STREAMS, NUMBER
from connectors.files.dates import (
    DAY_FIRST,
    MIXED,
    MONTH_FIRST,
    DateOrderError,
    DateSetting,
    decide_dates,
    survey_dates,
)
from connectors.files.profiles import PROFILES, Profile, normalise_header, resolve_profile
from connectors.files.reader import ExportFile, ExportFileError, landing_query, quote_identifier, read_export, sniff
from connectors.files.synonyms import LOST_STAGE_WORDS, WON_STAGE_WORDS, synonyms
from pipelines.config import DEFAULT_CONFIG_FILE
from pipelines.raw_files import EXPORT_SUFFIXES
from pipelines.warehouse import in_memory

CLOSE_MATCH = 0.85  # how alike (difflib ratio, normalised) a header must be to a synonym to be guessed
# Words a header may start with that only name the record ("Opportunity Title", "Journal No").
ENTITY_WORDS = {
    "deals": ("opportunity", "opp", "deal"),
    "deal_stage_history": ("opportunity", "opp", "deal"),
    "customers": ("customer", "account", "company", "organization", "organisation", "client"),
    "finance_gl": ("journal", "ledger", "gl", "entry", "transaction"),
    "csat": ("response", "survey"),
}
ID_WORDS = re.compile(r"(ref|reference|no|nr|number|num|key)$")  # "Opportunity Ref", "Deal No" name like an id
REQUIRED_STREAMS = ("deals", "finance_gl")  # a config must have them: taken when half their columns are found
VENDOR_PROFILES = ("hubspot_export", "salesforce_export", "pipedrive_export")
CRM_WORDS = re.compile(r"\bcrm\b|salesforce|hubspot|pipedrive|zoho|dynamics 365", re.I)
# Among CRM costs, the first category whose words appear; other CRM costs are crm_software.
CRM_CATEGORIES = (
    ("crm_implementation", re.compile(r"implement|integrat|migrat|consult|set-?up|onboard", re.I)),
    ("crm_training", re.compile(r"train|course|workshop", re.I)),
    ("crm_support", re.compile(r"support|maintenance|helpdesk", re.I)),
    ("crm_hardware", re.compile(r"hardware|laptop|device|tablet", re.I)),
)
SALES_MARKETING = re.compile(
    r"marketing|advertis|\bads?\b|campaign|sponsor|trade ?show|lead gen|paid search|commission", re.I)


class InitError(ValueError):
    """The folder cannot be turned into a starter config; the message says why."""


@dataclass(frozen=True)
class Guess:
    """One header guessed to hold one canonical column, and the synonym it matched."""

    header: str
    synonym: str

    @property
    def comment(self) -> str:
        close = normalise_header(self.header) != normalise_header(self.synonym)
        return f"guessed from {_q(self.header)}" + (f", close to {_q(self.synonym)}" if close else "")


def _readings(stream: str, col: str, header: str) -> set[str]:
    """Other normalised readings of a header: without a bracketed suffix ('Value (EUR)'), without
    the record's own word in front ('Opportunity Title'), and for the key column with '#' or an id
    word for 'id' ('Deal #', 'Opportunity Ref')."""
    bare = re.sub(r"\s*[(\[].*?[)\]]\s*$", "", header)
    forms = {normalise_header(bare)}
    if col == CANONICAL_STREAMS[stream].key:
        forms.add(normalise_header(bare.replace("#", " id")))
    forms |= {f.removeprefix(word) for f in forms for word in ENTITY_WORDS.get(stream, ()) if f.startswith(word)}
    if col == CANONICAL_STREAMS[stream].key:
        forms |= {ID_WORDS.sub("id", f) for f in forms}
    return forms - {""}


def guess_columns(stream: str, header: tuple[str, ...]) -> dict[str, Guess]:
    """The stream's columns matched to `header`: the same normalised form as a synonym first, then
    another reading of the header (see _readings), then a close one (difflib)."""
    usable = [h for h in header if normalise_header(h)]
    passes = (
        lambda col, name, h: normalise_header(name) == normalise_header(h),
        lambda col, name, h: normalise_header(name) in _readings(stream, col, h),
        lambda col, name, h: difflib.SequenceMatcher(None, normalise_header(name), normalise_header(h)).ratio()
        >= CLOSE_MATCH,
    )
    guesses: dict[str, Guess] = {}
    for matches in passes:
        for col, names in synonyms(stream).items():
            taken = {g.header for g in guesses.values()}
            hit = next(((h, n) for n in names for h in usable
                        if col not in guesses and h not in taken and matches(col, n, h)), None)
            if hit:
                guesses[col] = Guess(*hit)
    order = list(CANONICAL_STREAMS[stream].columns)
    return dict(sorted(guesses.items(), key=lambda item: order.index(item[0])))


def _needed(stream: str, guesses: dict[str, Guess]) -> tuple[str, ...]:
    """Required columns not guessed (is_closed/is_won come from the stage when there is one)."""
    derived = ("is_closed", "is_won") if stream == "deals" and "stage" in guesses else ()
    return tuple(c for c in CANONICAL_STREAMS[stream].required if c not in guesses and c not in derived)


@dataclass
class ExportGuess:
    """What one file in the folder looks like: its stream (None: not recognised) and columns."""

    path: Path
    header: tuple[str, ...]
    stream: str | None = None
    columns: dict[str, Guess] = field(default_factory=dict)
    closest: str = ""  # for a file not read: the stream it looks most like and what it lacks, or why

    @property
    def missing(self) -> tuple[str, ...]:
        return _needed(self.stream, self.columns) if self.stream else ()


def classify(path: Path) -> ExportGuess:
    """The stream whose required columns the file's headers cover best. Deals and the ledger, which a
    config must have, are taken when half their required columns are found (the rest become TODOs);
    an optional stream only when all of them are, since a partial one would only fail the run."""
    try:
        header = sniff(path).header
    except ExportFileError as unreadable:
        return ExportGuess(path, (), closest=str(unreadable).removeprefix(f"{path.name}: "))
    scored = []
    for stream, spec in CANONICAL_STREAMS.items():
        guesses = guess_columns(stream, header)
        covered = 1 - len(_needed(stream, guesses)) / len(spec.required)
        scored.append(((covered, len(guesses)), stream, guesses))
    taken = [(score, stream, guesses) for score, stream, guesses in scored
             if score[0] == 1 or (stream in REQUIRED_STREAMS and score[0] >= 0.5)]
    if taken:
        _, stream, guesses = max(taken)
        return ExportGuess(path, header, stream, guesses)
    (covered, _), stream, guesses = max(scored)
    closest = f"closest: {stream}, without {', '.join(_needed(stream, guesses))}" if covered else ""
    return ExportGuess(path, header, closest=closest)


@dataclass
class Lines:
    """YAML lines with their comments aligned, and the TODOs among them (for the command's summary)."""

    text: list[str] = field(default_factory=list)
    todos: list[str] = field(default_factory=list)

    def add(self, line: str, comment: str = "") -> None:
        if comment.startswith("TODO"):
            what = line.strip().lstrip("# ").rstrip(": ")
            self.todos.append(f"{what} ({comment.removeprefix('TODO: ')})")
        self.text.append(f"{line:<40} # {comment}" if comment else line)


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def _pattern(paths: list[Path]) -> str:
    """One file's name, or a glob matching several files with the same header (nightly deltas)."""
    if len(paths) == 1:
        return paths[0].name
    prefix = os.path.commonprefix([p.name for p in paths])  # noqa: RUF071 (names: character-wise is meant)
    return f"{prefix}*{paths[0].suffix}"


def _profile_for(deals: Path) -> tuple[str, str]:
    """The profile that reads the deals file by its own headers, and why; `custom` when none does."""
    candidates = [("canonical", "the headers are the canonical ones")] + [
        (name, f"the headers are {name.split('_')[0].capitalize()}'s export's") for name in VENDOR_PROFILES]
    for name, why in candidates:
        profile = PROFILES[name]
        try:
            export = read_export(deals, "deals", profile)
        except ExportFileError:
            continue
        own_id = {normalise_header(h) for h in profile.headers.get("deals", {}).get("deal_id", ("deal_id",))}
        if any(normalise_header(h) in own_id for h in export.present["deal_id"]):
            return name, why
    return "custom", f"no export profile fits {deals.name}: a column map"


@dataclass
class SourcePlan:
    """The files source of the starter config: its files, profile and column map."""

    folder: Path
    files: dict[str, list[ExportGuess]]
    profile: str
    why: str
    columns: dict[str, Guess] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    missing: dict[str, tuple[str, ExportGuess]] = field(default_factory=dict)  # column -> (stream, file)

    def __post_init__(self) -> None:
        """The map: guessed columns the profile does not find by itself, one header per column."""
        base = self.reading_profile(with_map=False)
        for stream, group in self.files.items():
            first = group[0]
            found = {col: {normalise_header(h) for h in heads} for col, heads in base.headers_for(stream).items()}
            for col, guess in first.columns.items():
                if normalise_header(guess.header) in found.get(col, set()):
                    continue
                if col in self.columns and self.columns[col].header != guess.header:
                    self.notes.append(f"{first.path.name} holds {col} in {_q(guess.header)}, but one map serves "
                                      f"the source: rename that header to {_q(self.columns[col].header)}")
                    continue
                self.columns.setdefault(col, guess)
            if self.profile == "custom" or stream != "deals":
                for col in first.missing:
                    self.missing.setdefault(col, (stream, first))

    def reading_profile(self, with_map: bool = True) -> Profile:
        """The profile as the config will read the files (won and lost stages are not known yet)."""
        columns = {col: g.header for col, g in self.columns.items()} if with_map else {}
        return resolve_profile(self.profile, columns, [], [])

    def exports(self) -> list[ExportFile]:
        """Every file of the source as the config reads it (so far: required columns may be missing)."""
        profile = self.reading_profile()
        return [read_export(g.path, stream, profile, complete=False) for stream, group in self.files.items()
                for g in group]


def _surveys(con: duckdb.DuckDBPyConnection, exports: list[ExportFile]) -> list[tuple]:
    return [(e, h, s) for e in exports for h, s in survey_dates(con, e).items()]


def _date_format(lines: Lines, con: duckdb.DuckDBPyConnection, exports: list[ExportFile], key: str,
                 indent: str) -> str | None:
    """The date_format line for one config section's files, from what their values settle."""
    # A column mostly ISO with a few odd values is ISO: those values are row errors, not a format.
    surveys = [(e, h, s) for e, h, s in _surveys(con, exports) if s.day_month > s.counts.get("iso", 0)]
    decided = {s.values_order: (e, h, s) for e, h, s in surveys if s.values_order in (DAY_FIRST, MONTH_FIRST)}
    for export, header, survey in surveys:
        if survey.values_order == MIXED:
            lines.add(f"{indent}# {export.path.name} {_q(header)} holds dates in both orders: correct them "
                      "(`crm-roi validate` lists the lines)")
    if len(decided) > 1:
        orders = ", ".join(f"{e.path.name} {_q(h)} {order}" for order, (e, h, _) in decided.items())
        lines.add(f"{indent}# date_format:", f"TODO: some date columns are day first, some month first ({orders}); "
                  "each is read as its values say, and a column whose dates all read either way needs this")
        return None
    if decided:
        order, (export, header, survey) = next(iter(decided.items()))
        example = survey.examples["day_first" if order == DAY_FIRST else "month_first"]
        date_format = survey.date_format(order)
        lines.add(f"{indent}date_format: {_q(date_format)}",
                  f"{order}, from the values (e.g. {_q(example)} in {export.path.name} {_q(header)})")
        return date_format
    either = [(e, h, s) for e, h, s in surveys if s.day_month]
    if either:
        export, header, survey = either[0]
        lines.add(f"{indent}# date_format: {_q(survey.date_format(DAY_FIRST))}",
                  f"TODO: every date reads either way (e.g. {_q(survey.example or '')} in {export.path.name} "
                  f"{_q(header)}): uncomment this for day first, or use {_q(survey.date_format(MONTH_FIRST))} "
                  f"for month first ({key})")
    return None


def _decimal_separator(lines: Lines, con: duckdb.DuckDBPyConnection, exports: list[ExportFile], indent: str) -> None:
    """The decimal_separator line, when the files' numbers are written with a decimal comma ("1.200,50")."""
    comma = point = 0
    example = None
    for export in exports:
        kinds = CANONICAL_STREAMS[export.stream].columns
        for header in (h for col, headers in export.present.items() if kinds.get(col) == NUMBER for h in headers):
            rows, params = export.rows_sql()
            values = f"SELECT trim({quote_identifier(header)}) AS v {rows}"
            found = con.execute(
                "SELECT count(*) FILTER (WHERE c AND NOT p), count(*) FILTER (WHERE p AND NOT c), "  # noqa: S608
                "min(v) FILTER (WHERE c AND NOT p) FROM (SELECT v, parse_number(v) IS NOT NULL AS p, "
                f"decimal_comma_to_point(v) IS NOT NULL AS c FROM ({values}))",
                params,
            ).fetchone()
            comma, point = comma + found[0], point + found[1]
            example = example or (found[2] and f"{_q(found[2])} in {export.path.name} {_q(header)}")
    if comma > point:
        lines.add(f'{indent}decimal_separator: ","', f"guessed: numbers like {example} use a decimal comma")


def _values(con: duckdb.DuckDBPyConnection, export: ExportFile, sql: str, date_format: str | None) -> list[tuple]:
    """Run `sql` over the file's canonical rows (as table `rows`), its dates read as configured."""
    try:
        formats = {h: d.formats for h, d in decide_dates(con, export, DateSetting("", date_format)).items()}
    except DateOrderError:
        formats = {}
    select, params = landing_query(export, formats, "", "UTC")
    return con.execute(f"WITH rows AS ({select}) {sql}", params).fetchall()


def _raw_values(con: duckdb.DuckDBPyConnection, export: ExportFile, header: str) -> list[tuple[str, int]]:
    """A column's distinct values as exported, commonest first (at most 30)."""
    rows, params = export.rows_sql()
    return con.execute(
        f"SELECT v, count(*) FROM (SELECT trim({quote_identifier(header)}) AS v {rows}) "  # noqa: S608
        "WHERE v <> '' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 30", params).fetchall()


def _go_live(con: duckdb.DuckDBPyConnection, deals: ExportFile, date_format: str | None) -> tuple[dt.date, str]:
    """A placeholder go-live: 12 months after the first deal, so the baseline has data."""
    if not deals.present.get("created_at"):
        return dt.date.today().replace(day=1), "the first of this month"
    ((first, last),) = _values(con, deals, "SELECT min(CAST(created_at AS DATE)), max(CAST(created_at AS DATE)) "
                                           "FROM rows", date_format)
    if first is None:
        return dt.date.today().replace(day=1), "the first of this month"
    month = first.year * 12 + first.month - 1 + 12
    start = dt.date(month // 12, month % 12 + 1, 1)
    if start > last:
        return (first + (last - first) / 2).replace(day=1), "the month halfway through the deals"
    return start, "12 months after the first deal"


def _stages(lines: Lines, con: duckdb.DuckDBPyConnection, deals: ExportFile) -> None:
    """The stage (or status) values found, and won/lost stages guessed from their names."""
    profile = deals.profile
    if deals.present.get("is_closed") and deals.present.get("is_won"):
        return
    headers = deals.present.get(profile.status_column) or []
    if not headers:
        lines.add("    won_stages: []", "TODO: no stage column found: map one (columns: {stage: ...}) and list "
                  "its won values")
        return
    values = _raw_values(con, deals, headers[0])
    found = ", ".join(f"{_q(v)} ({n})" for v, n in values)
    lines.add(f"    # {profile.status_column} values in {deals.path.name} {_q(headers[0])}: {found}")
    if set(profile.won_values) & {v for v, _ in values}:
        return  # the profile knows its won and lost values
    for key, words in (("won_stages", WON_STAGE_WORDS), ("lost_stages", LOST_STAGE_WORDS)):
        chosen = [v for v, _ in values if re.search(words, v.lower())]
        if chosen:
            lines.add(f"    {key}: [{', '.join(_q(v) for v in chosen)}]", "guessed from the stage names")
        else:
            lines.add(f"    {key}: []", f"TODO: the stage values that mean {key.split('_')[0]}")


def _currencies(con: duckdb.DuckDBPyConnection, exports: list[ExportFile]) -> Counter:
    """How many rows name each currency, over the files with a currency column."""
    counts: Counter = Counter()
    for export in exports:
        for header in export.present.get("currency", [])[:1]:
            counts.update({v.upper(): n for v, n in _raw_values(con, export, header)})
    return counts


def _account_category(description: str, vendor: str) -> str | None:
    """A GL account's cost category guessed from its commonest description, then its vendor."""
    if CRM_WORDS.search(f"{description} {vendor}"):
        return next((category for text in (description, vendor) for category, words in CRM_CATEGORIES
                     if words.search(text)), "crm_software")
    return "sales_marketing" if SALES_MARKETING.search(f"{description} {vendor}") else None


def _key_hint(guess: ExportGuess, stream: str) -> str:
    """For a missing key: the headers that might identify a record together, and the catch."""
    parts = [guess.columns[c].header for c in ("deal_name", "name", "created_at", "started_at", "posted_on",
                                               "account", "description", "amount") if c in guess.columns]
    what = "line" if stream == "finance_gl" else "record"
    return (f"; or a list of headers that together identify a {what}, e.g. [{', '.join(map(_q, parts))}] "
            "(rows alike in all of them count once)")


def _finance(lines: Lines, con: duckdb.DuckDBPyConnection, ledger: ExportGuess | None,
             out_dir: Path) -> ExportFile | None:
    """The finance section's lines; returns the ledger as the config reads it."""
    lines.add("")
    lines.add("finance:")
    if ledger is None:
        lines.add('  path: "TODO.csv"', "TODO: the general-ledger export; no file here looks like one (it needs "
                  "posting date, account and amount columns)")
        lines.add("  accounts: {}", "TODO: GL account -> cost category")
        return None
    lines.add(f"  path: {_q(_relative(ledger.path, out_dir))}", f"guessed: {ledger.path.name} looks like a general "
              "ledger")
    canonical = PROFILES["canonical"].headers_for("finance_gl")
    columns = {col: g for col, g in ledger.columns.items()
               if normalise_header(g.header) not in {normalise_header(h) for h in canonical[col]}}
    if columns or ledger.missing:
        lines.add("  columns:")
    for col, guess in columns.items():
        lines.add(f"    {col}: {_q(guess.header)}", guess.comment)
    for col in ledger.missing:
        hint = _key_hint(ledger, "finance_gl") if col == "entry_id" else ""
        lines.add(f"    # {col}:", f"TODO: the header that holds {col}, which is required{hint}")
    profile = resolve_profile("custom" if columns else "canonical", {c: g.header for c, g in columns.items()}, [], [])
    export = read_export(ledger.path, "finance_gl", profile, complete=False)
    date_format = _date_format(lines, con, [export], "finance.date_format", "  ")
    _decimal_separator(lines, con, [export], "  ")
    accounts = (_values(con, export, "SELECT account, count(*), mode(description), mode(vendor) FROM rows "
                                     "WHERE account IS NOT NULL GROUP BY 1 ORDER BY 1", date_format)
                if export.present.get("account") else [])
    guessed = [(a, n, d, v, _account_category(d or "", v or "")) for a, n, d, v in accounts]
    if any(category for *_, category in guessed):
        lines.add("  accounts:", "GL account -> cost category; an account not listed counts nowhere")
    else:
        lines.add("  accounts: {}", "TODO: GL account -> cost category (the accounts found are listed below)")
    for account, count, description, vendor, category in guessed:
        said = " / ".join(_q(x) for x in (description, vendor) if x) or "no description"
        if category:
            lines.add(f"    {_q(account)}: {category}", f"guessed from {said} ({_count(count, 'line')})")
        else:
            lines.add(f"    # {_q(account)}: operating_cost", f"{said} ({_count(count, 'line')}): uncomment and "
                      "set its category if it is a CRM, sales or operating cost")
    return export


def _source(lines: Lines, con: duckdb.DuckDBPyConnection, plan: SourcePlan, exports: list[ExportFile],
            out_dir: Path) -> str | None:
    """The files source's lines; returns the date_format they set, if any."""
    lines.add("")
    lines.add("sources:")
    lines.add("  - kind: files")
    lines.add(f"    path: {_q(_relative(plan.folder, out_dir))}")
    lines.add(f"    profile: {plan.profile}", f"guessed: {plan.why}")
    lines.add("    files:")
    for stream, group in plan.files.items():
        required = len(CANONICAL_STREAMS[stream].required)
        lines.add(f"      {stream}: {_q(_pattern([g.path for g in group]))}",
                  f"guessed: {required - len(group[0].missing)} of {required} required columns found")
    if plan.columns or plan.missing:
        lines.add("    columns:")
    for col, guess in plan.columns.items():
        lines.add(f"      {col}: {_q(guess.header)}", guess.comment)
    for col, (stream, guess) in plan.missing.items():
        hint = _key_hint(guess, stream) if col == CANONICAL_STREAMS[stream].key else ""
        lines.add(f"      # {col}:", f"TODO: the header of {guess.path.name} that holds {stream}.{col}, which "
                  f"is required{hint}")
    for note in plan.notes:
        lines.add("    # columns:", f"TODO: {note}")
    date_format = _date_format(lines, con, exports, "sources.0.date_format", "    ")
    _decimal_separator(lines, con, exports, "    ")
    _stages(lines, con, exports[0])
    return date_format


def _folder(folder: Path) -> tuple[list[ExportGuess], dict[str, list[ExportGuess]], ExportGuess | None]:
    """Every export in the folder classified; the files source's streams (the first file of each, and
    later ones with the same header); the ledger."""
    guesses = [classify(p) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in EXPORT_SUFFIXES]
    by_stream: dict[str, list[ExportGuess]] = {}
    for guess in guesses:
        if guess.stream:
            by_stream.setdefault(guess.stream, []).append(guess)
    if "deals" not in by_stream:
        seen = "; ".join(f"{g.path.name} ({', '.join(g.header[:6]) or g.closest}"
                         f"{', ...' if len(g.header) > 6 else ''})" for g in guesses) or "no .csv, .tsv or .txt files"
        raise InitError(f"{folder}: no export here looks like deals (an id, created and close dates, an amount, "
                        f"a stage); found: {seen}")
    ledger = (by_stream.pop("finance_gl", None) or [None])[0]
    files = {stream: [g for g in by_stream[stream] if g.header == by_stream[stream][0].header]
             for stream in CANONICAL_STREAMS if stream in by_stream}
    return guesses, files, ledger


def render(folder: Path, out: Path) -> Lines:
    """The starter config for the exports in `folder`, to be written at `out`."""
    guesses, files, ledger = _folder(folder)
    out_dir = out.parent
    plan = SourcePlan(folder, files, *_profile_for(files["deals"][0].path))
    body = Lines()
    exports = plan.exports()
    with in_memory() as con:
        date_format = _source(body, con, plan, exports, out_dir)
        ledger_export = _finance(body, con, ledger, out_dir)
        go_live, why = _go_live(con, exports[0], date_format)
        currencies = _currencies(con, [exports[0], *([ledger_export] if ledger_export else [])])
    lines = Lines([
        f"# crm-roi config started by `crm-roi init` from the exports in {folder.resolve()} on {dt.date.today()}.",
        "# Lines marked 'guessed' were read from the files' headers and values: check each one.",
        "# Lines marked TODO need you. Then: crm-roi validate, and crm-roi run."])
    lines.add(f"go_live: {go_live.isoformat()}", f"TODO: the CRM's go-live date; a placeholder, {why}")
    lines.add("baseline_months: 12", "months before go-live that form the baseline")
    if not currencies:
        lines.add("base_currency: USD", "TODO: the currency of the amounts; no column names one")
    elif len(currencies) == 1:
        lines.add(f"base_currency: {next(iter(currencies))}", "guessed: every amount is in it")
    else:
        found = ", ".join(f"{c} ({_count(n, 'row')})" for c, n in currencies.most_common())
        base = currencies.most_common(1)[0][0]
        if "fx_rates" in files:
            lines.add(f"base_currency: {base}", f"guessed: the commonest of {found}; "
                      f"{files['fx_rates'][0].path.name} converts the others")
        else:
            lines.add(f"base_currency: {base}", f"TODO: amounts are in {found}: put an fx_rates.csv (date, "
                      "currency, rate_to_base) in the folder")
    lines.add("gross_margin: 1.0", "share of incremental revenue that is benefit (your margin)")
    lines.add("attribution_share: 1.0", "share of each benefit credited to the CRM")
    if not (out_dir.resolve().is_relative_to(folder.resolve()) or folder.resolve().is_relative_to(out_dir.resolve())):
        lines.add(f"data_roots: [{_q('.')}, {_q(_relative(folder, out_dir))}]", "the exports live outside this folder")
    for unused in (g for g in guesses if not g.stream):
        why = "its headers look like no stream" + (f" ({unused.closest})" if unused.closest else "")
        lines.add(f"# not read: {unused.path.name}: {why if unused.header else unused.closest}")
    lines.text += body.text
    lines.todos += body.todos
    return lines


def write_starter_config(folder: Path, out: Path | None = None, force: bool = False) -> tuple[Path, Lines]:
    """Write the starter config (default FOLDER/crm_roi.yaml); never over an existing file unless `force`."""
    if not folder.is_dir():
        raise InitError(f"{folder}: not a folder")
    target = out or folder / DEFAULT_CONFIG_FILE
    if target.exists() and not force:
        raise InitError(f"{target} already exists; pass --force to overwrite it, or --out FILE")
    lines = render(folder, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines.text) + "\n", encoding="utf-8")
    return target, lines
