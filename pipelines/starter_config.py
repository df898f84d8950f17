"""`crm-roi init FOLDER`: a starter crm_roi.yaml guessed from the exports in a folder.

Bringing an unfamiliar export used to mean writing a column map by hand. Here each
file's headers are matched (normalised) against the synonyms every canonical column
is known by (connectors/files/synonyms.py), which tells which file holds deals,
which the general ledger and so on, and which header holds which column. Nothing is
decided silently: every guess is written with a `# guessed from ...` comment, what
only the user can say is a `TODO`, and the values that help fill the rest (stage
values, GL accounts, the dates' day/month order) are read from the files with DuckDB.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from connectors.contract import CANONICAL_STREAMS
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
from connectors.files.reader import (
    ExportFile,
    ExportFileError,
    landing_query,
    quote_identifier,
    read_export,
    sniff,
)
from connectors.files.synonyms import synonyms
from pipelines.config import DEFAULT_CONFIG_FILE
from pipelines.warehouse import in_memory

EXPORT_SUFFIXES = (".csv", ".tsv", ".txt")
CLOSE_MATCH = 0.85  # how alike (difflib ratio, normalised) a header must be to a synonym to be guessed
# Words a header may start with that only name the record ("Opportunity Title", "Journal No").
ENTITY_WORDS = {
    "deals": ("opportunity", "opp", "deal"),
    "deal_stage_history": ("opportunity", "opp", "deal"),
    "customers": ("customer", "account", "company", "organization", "organisation", "client"),
    "finance_gl": ("journal", "ledger", "gl", "entry", "transaction"),
    "csat": ("response", "survey"),
}
ID_WORDS = re.compile(r"(ref|reference|no|nr|number|num|key)$")  # "Opportunity Ref" names like an id
VENDOR_PROFILES = ("hubspot_export", "salesforce_export", "pipedrive_export")
WON, LOST = re.compile(r"won|\bwin\b|gewonnen|gagn", re.I), re.compile(r"lost|\blose\b|verloren|perdu", re.I)
CRM_WORDS = re.compile(r"\bcrm\b|salesforce|hubspot|pipedrive|zoho|dynamics 365", re.I)
# Among CRM costs, the first category whose words appear; other CRM costs are crm_software.
CRM_CATEGORIES = (
    ("crm_implementation", re.compile(r"implement|integrat|migrat|consult|set-?up|onboard", re.I)),
    ("crm_training", re.compile(r"train|course|workshop", re.I)),
    ("crm_support", re.compile(r"support|maintenance|helpdesk", re.I)),
    ("crm_hardware", re.compile(r"hardware|laptop|device|tablet", re.I)),
)
SALES_MARKETING = re.compile(r"marketing|advertis|\bads?\b|campaign|sponsor|trade ?show|lead gen|paid search|"
                             r"commission", re.I)


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


def _variants(stream: str, col: str, form: str) -> set[str]:
    """Other readings of a normalised header: without the entity word it starts with ('Opportunity
    Title' is a title), and for the key column with an id word for 'id' ('Opportunity Ref')."""
    forms = {form, *(form.removeprefix(p) for p in ENTITY_WORDS.get(stream, ()) if form.startswith(p))} - {""}
    if col == CANONICAL_STREAMS[stream].key:
        forms |= {ID_WORDS.sub("id", f) for f in forms}
    return forms


def guess_columns(stream: str, header: tuple[str, ...]) -> dict[str, Guess]:
    """The stream's columns matched to `header`: the same normalised form as a synonym first, then
    another reading of the header (see _variants), then a close one (difflib)."""
    forms = {normalise_header(h): h for h in header if normalise_header(h)}
    guesses: dict[str, Guess] = {}
    passes = (
        lambda col, name, form: normalise_header(name) == form,
        lambda col, name, form: normalise_header(name) in _variants(stream, col, form),
        lambda col, name, form: difflib.SequenceMatcher(None, normalise_header(name), form).ratio() >= CLOSE_MATCH,
    )
    for matches in passes:
        for col, names in synonyms(stream).items():
            taken = {g.header for g in guesses.values()}
            hit = next(((forms[f], n) for n in names for f in forms
                        if col not in guesses and forms[f] not in taken and matches(col, n, f)), None)
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
    closest: str = ""  # for a file not recognised: the stream it looks most like, and what it lacks

    @property
    def missing(self) -> tuple[str, ...]:
        return _needed(self.stream, self.columns) if self.stream else ()


def classify(path: Path) -> ExportGuess:
    """The stream whose required columns the file's headers cover best. Deals and the ledger, which a
    config must have, are taken when half their required columns are found (the rest become TODOs);
    an optional stream only when all of them are, since a partial one would only fail the run."""
    header = sniff(path).header
    scored = []
    for stream, spec in CANONICAL_STREAMS.items():
        guesses = guess_columns(stream, header)
        covered = 1 - len(_needed(stream, guesses)) / len(spec.required)
        scored.append(((covered, len(guesses)), stream, guesses))
    taken = [(score, stream, guesses) for score, stream, guesses in scored
             if score[0] == 1 or (stream in ("deals", "finance_gl") and score[0] >= 0.5)]
    if taken:
        _, stream, guesses = max(taken)
        return ExportGuess(path, header, stream, guesses)
    (covered, _), stream, guesses = max(scored)
    closest = f"closest: {stream}, without {', '.join(_needed(stream, guesses))}" if covered else ""
    return ExportGuess(path, header, closest=closest)


@dataclass
class Lines:
    """YAML lines with their comments aligned, and the TODOs among them."""

    text: list[str] = field(default_factory=list)
    todos: list[str] = field(default_factory=list)

    def add(self, line: str, comment: str = "") -> None:
        if comment.startswith("TODO") or line.strip().startswith("# TODO"):
            what = line.strip().lstrip("# ").removeprefix("TODO: ").rstrip(": ")
            self.todos.append(f"{what} ({comment.removeprefix('TODO: ')})" if comment else what)
        self.text.append(f"{line:<40} # {comment}" if comment and line.strip() else
                         f"{line}# {comment}" if comment else line)


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def _pattern(paths: list[Path]) -> str:
    """One file's name, or a glob matching several files with the same header (nightly deltas)."""
    names = [p.name for p in paths]
    if len(names) == 1:
        return names[0]
    prefix = os.path.commonprefix(names)  # noqa: RUF071 (names, not paths: character-wise is meant)
    return f"{prefix}*{Path(names[0]).suffix}"


def _profile_for(files: dict[str, list[ExportGuess]]) -> tuple[str, str]:
    """The profile that reads the deals file by its own headers, and why; `custom` when none does."""
    deals = files["deals"][0].path
    candidates = [("canonical", "the headers are the canonical ones")] + [
        (name, f"the headers are {name.split('_')[0].capitalize()}'s export headers") for name in VENDOR_PROFILES]
    for name, why in candidates:
        profile = PROFILES[name]
        try:
            export = read_export(deals, "deals", profile)
        except ExportFileError:
            continue
        own_id = profile.headers.get("deals", {}).get("deal_id", ("deal_id",))
        if any(normalise_header(h) in {normalise_header(i) for i in own_id} for h in export.present["deal_id"]):
            return name, why
    return "custom", f"no export profile fits {deals.name}: a column map"


@dataclass
class SourcePlan:
    """Everything the files source of the starter config says, with its comments."""

    folder: Path
    files: dict[str, list[ExportGuess]]
    profile: str
    why: str
    columns: dict[str, Guess] = field(default_factory=dict)
    column_notes: list[str] = field(default_factory=list)
    missing: dict[str, tuple[str, ExportGuess]] = field(default_factory=dict)  # column -> (stream, file)

    def resolved(self, with_map: bool = True) -> Profile:
        """The profile as the config will read the files. The custom profile derives is_closed and
        is_won from won stages not known yet: a placeholder keeps the columns checkable."""
        columns = {col: g.header for col, g in self.columns.items()} if with_map else {}
        return resolve_profile(self.profile, columns, ["(won stages)"] if self.profile == "custom" else [], [])


def _plan_columns(plan: SourcePlan) -> None:
    """The column map: guessed columns the profile does not find by itself, one header per column."""
    base = plan.resolved(with_map=False)
    for stream, guesses in plan.files.items():
        first = guesses[0]
        found = base.headers_for(stream)
        for col, guess in first.columns.items():
            if any(normalise_header(h) == normalise_header(guess.header) for h in found.get(col, ())):
                continue
            if col in plan.columns and plan.columns[col].header != guess.header:
                plan.column_notes.append(
                    f"{first.path.name} holds {col} in {_q(guess.header)}, but one map serves the source: "
                    f"rename that header to {_q(plan.columns[col].header)}")
                continue
            plan.columns.setdefault(col, guess)
        if plan.profile == "custom" or stream != "deals":
            for col in first.missing:
                plan.missing.setdefault(col, (stream, first))


def _date_line(surveys: list[tuple[ExportFile, str, object]], key: str, lines: Lines, indent: str) -> str | None:
    """The date_format line for one source's date columns, from what their values settle."""
    decided = {s.values_order: (e, h, s) for e, h, s in surveys if s.values_order in (DAY_FIRST, MONTH_FIRST)}
    mixed = [(e, h) for e, h, s in surveys if s.values_order == MIXED]
    either = [(e, h, s) for e, h, s in surveys if s.day_month and s.values_order is None]
    for export, header in mixed:
        lines.add(f"{indent}# {export.path.name} {_q(header)} holds dates in both orders: correct them "
                  "(`crm-roi validate` lists the lines)")
    if len(decided) > 1:
        lines.add(f"{indent}# TODO: some date columns are day first and some month first "
                  f"({', '.join(f'{e.path.name} {_q(h)}: {o}' for o, (e, h, _) in decided.items())}); "
                  "each is read as its values say, ambiguous ones need date_format")
        return None
    if decided:
        order, (export, header, survey) = next(iter(decided.items()))
        date_format = survey.date_format(order)
        example = survey.examples["day_first" if order == DAY_FIRST else "month_first"]
        lines.add(f"{indent}date_format: {_q(date_format)}",
                  f"{order}, from the values (e.g. {_q(example)} in {export.path.name} {_q(header)})")
        return date_format
    if either:
        export, header, survey = either[0]
        lines.add(f"{indent}# date_format: {_q(survey.date_format(DAY_FIRST))}",
                  f"TODO: every date reads either way (e.g. {_q(survey.example or '')} in {export.path.name} "
                  f"{_q(header)}): uncomment this for day first, or use {_q(survey.date_format(MONTH_FIRST))} "
                  f"for month first ({key})")
    return None


def _surveys(con: duckdb.DuckDBPyConnection, exports: list[ExportFile]) -> list[tuple[ExportFile, str, object]]:
    return [(e, h, s) for e in exports for h, s in survey_dates(con, e).items()]


def _exports(files: dict[str, list[ExportGuess]], profile: Profile) -> list[ExportFile]:
    """The files as the config will read them; a file missing a required column is left out."""
    out = []
    for stream, guesses in files.items():
        for guess in guesses:
            try:
                out.append(read_export(guess.path, stream, profile))
            except ExportFileError:
                continue
    return out


def _values(con: duckdb.DuckDBPyConnection, export: ExportFile, sql: str, dates: DateSetting) -> list[tuple]:
    """Run `sql` over the file's canonical rows (table `rows`), its dates read as configured."""
    try:
        formats = {h: d.formats for h, d in decide_dates(con, export, dates).items()}
    except DateOrderError:
        formats = {}
    select, params = landing_query(export, formats, "USD", "UTC")
    return con.execute(f"WITH rows AS ({select}) {sql}", params).fetchall()


def _go_live(con: duckdb.DuckDBPyConnection, deals: ExportFile, dates: DateSetting) -> tuple[dt.date, str]:
    """A placeholder go-live: 12 months after the first deal, so the baseline has data."""
    ((first, last),) = _values(con, deals, "SELECT min(parse_date(created_at)), max(parse_date(created_at)) "
                                           "FROM rows", dates)
    if first is None:
        today = dt.date.today()
        return today.replace(day=1), "the first of this month"
    month = first.year * 12 + first.month - 1 + 12
    start = dt.date(month // 12, month % 12 + 1, 1)
    if start > last:
        middle = first + (last - first) / 2
        return middle.replace(day=1), "the month halfway through the deals"
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
    rows, params = deals.rows_sql()
    values = con.execute(
        f"SELECT v, count(*) FROM (SELECT trim({quote_identifier(headers[0])}) AS v {rows}) "  # noqa: S608
        "WHERE v <> '' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 30", params).fetchall()
    found = ", ".join(f"{_q(v)} ({n})" for v, n in values)
    lines.add(f"    # {profile.status_column} values in {deals.path.name} {_q(headers[0])}: {found}")
    if set(profile.won_values) & {v for v, _ in values}:
        return  # the profile knows its won and lost values
    for key, pattern in (("won_stages", WON), ("lost_stages", LOST)):
        chosen = [v for v, _ in values if pattern.search(v) and not (key == "won_stages" and LOST.search(v))]
        if chosen:
            lines.add(f"    {key}: [{', '.join(_q(v) for v in chosen)}]", "guessed from the stage names")
        else:
            lines.add(f"    {key}: []", f"TODO: the stage values that mean {key.split('_')[0]}")


def _account_category(text: str) -> str | None:
    if CRM_WORDS.search(text):
        return next((category for category, words in CRM_CATEGORIES if words.search(text)), "crm_software")
    return "sales_marketing" if SALES_MARKETING.search(text) else None


def _finance(lines: Lines, con: duckdb.DuckDBPyConnection, ledger: ExportGuess | None, out_dir: Path) -> None:
    lines.add("")
    lines.add("finance:")
    if ledger is None:
        lines.add('  path: "TODO.csv"', "TODO: the general-ledger export; no file here looks like one (it needs "
                  "posting date, account and amount columns)")
        lines.add("  accounts: {}", "TODO: GL account -> cost category")
        return
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
            lines.add(f"    # {col}: ", f"TODO: the header that holds {col}, which is required"
                      + ("; or a list of headers that together identify a line" if col == "entry_id" else ""))
    profile = resolve_profile("custom" if columns else "canonical", {c: g.header for c, g in columns.items()}, [], [])
    try:
        export = read_export(ledger.path, "finance_gl", profile)
    except ExportFileError:
        lines.add("  accounts: {}", "TODO: GL account -> cost category (fix the columns first)")
        return
    date_format = _date_line(_surveys(con, [export]), "finance.date_format", lines, "  ")
    dates = DateSetting("finance", date_format)
    accounts = _values(con, export, "SELECT account, count(*), mode(description), mode(vendor) FROM rows "
                                    "WHERE account IS NOT NULL GROUP BY 1 ORDER BY 1", dates)
    guessed = [(a, n, d, v, _account_category(f"{d or ''} {v or ''}")) for a, n, d, v in accounts]
    if not any(category for *_, category in guessed):
        lines.add("  accounts:", "TODO: map the CRM and sales cost accounts below to their category")
    else:
        lines.add("  accounts:", "GL account -> cost category; an account not listed counts nowhere")
    for account, count, description, vendor, category in guessed:
        said = " / ".join(_q(x) for x in (description, vendor) if x) or "no description"
        if category:
            lines.add(f"    {_q(account)}: {category}", f"guessed from {said} ({_count(count, 'line')})")
        else:
            lines.add(f"    # {_q(account)}: operating_cost", f"{said} ({_count(count, 'line')}): uncomment and "
                      "set its category if it is a CRM, sales or operating cost")


def render(folder: Path, out: Path) -> Lines:
    """The starter config for the exports in `folder`, to be written at `out`."""
    guesses = [classify(p) for p in sorted(folder.iterdir())
               if p.is_file() and p.suffix.lower() in EXPORT_SUFFIXES]
    by_stream: dict[str, list[ExportGuess]] = {}
    for guess in guesses:
        if guess.stream:
            by_stream.setdefault(guess.stream, []).append(guess)
    if "deals" not in by_stream:
        seen = "; ".join(f"{g.path.name} ({', '.join(g.header[:6])}{', ...' if len(g.header) > 6 else ''})"
                         for g in guesses) or "no .csv files"
        raise InitError(f"{folder}: no export here looks like deals (an id, created and close dates, an amount, "
                        f"a stage); found: {seen}")
    ledger = (by_stream.pop("finance_gl", None) or [None])[0]
    files = {stream: _same_header(by_stream[stream]) for stream in CANONICAL_STREAMS if stream in by_stream}
    out_dir = out.parent
    lines = Lines([
        f"# crm-roi config started by `crm-roi init` from the exports in {folder.resolve()} on {dt.date.today()}.",
        "# Lines marked 'guessed' were read from the files' headers and values: check each one.",
        "# Lines marked TODO need you. Then: crm-roi validate, and crm-roi run."])
    with in_memory() as con:
        plan = SourcePlan(folder, files, *_profile_for(files))
        _plan_columns(plan)
        body = Lines()
        date_format = _source(body, con, plan, out_dir)
        _finance(body, con, ledger, out_dir)
        deals = next(iter(_exports({"deals": files["deals"][:1]}, plan.resolved())), None)
        go_live, why = (_go_live(con, deals, DateSetting("", date_format)) if deals
                        else (dt.date.today().replace(day=1), "the first of this month"))
    lines.add(f"go_live: {go_live.isoformat()}", f"TODO: the CRM's go-live date; a placeholder, {why}")
    lines.add("baseline_months: 12", "months before go-live that form the baseline")
    lines.add("gross_margin: 1.0", "share of incremental revenue that is benefit (your margin)")
    lines.add("attribution_share: 1.0", "share of each benefit credited to the CRM")
    if not out_dir.resolve().is_relative_to(folder.resolve()) and not folder.resolve().is_relative_to(
            out_dir.resolve()):
        lines.add(f"data_roots: [{_q('.')}, {_q(_relative(folder, out_dir))}]", "the exports live outside this folder")
    for unused in (g for g in guesses if not g.stream):
        lines.add(f"# not read: {unused.path.name}: its headers look like no stream"
                  + (f" ({unused.closest})" if unused.closest else ""))
    lines.text += body.text
    lines.todos += body.todos
    return lines


def _same_header(group: list[ExportGuess]) -> list[ExportGuess]:
    """The first file of a stream and the later ones with the same header (read with one pattern)."""
    return [g for g in group if g.header == group[0].header]


def _source(lines: Lines, con: duckdb.DuckDBPyConnection, plan: SourcePlan, out_dir: Path) -> str | None:
    """The files source's lines; returns the date_format they set, if any."""
    lines.add("")
    lines.add("sources:")
    lines.add("  - kind: files")
    lines.add(f"    path: {_q(_relative(plan.folder, out_dir))}")
    lines.add(f"    profile: {plan.profile}", f"guessed: {plan.why}")
    lines.add("    files:")
    for stream, group in plan.files.items():
        first = group[0]
        found = len(CANONICAL_STREAMS[stream].required) - len(first.missing)
        lines.add(f"      {stream}: {_q(_pattern([g.path for g in group]))}",
                  f"guessed: {found} of {len(CANONICAL_STREAMS[stream].required)} required columns found")
    if plan.columns or plan.missing:
        lines.add("    columns:")
    for col, guess in plan.columns.items():
        lines.add(f"      {col}: {_q(guess.header)}", guess.comment)
    for col, (stream, guess) in plan.missing.items():
        hint = ""
        if col == CANONICAL_STREAMS[stream].key:
            parts = [guess.columns[c].header for c in ("deal_name", "name", "created_at", "started_at")
                     if c in guess.columns]
            hint = f"; or a list of headers that together identify a record, e.g. [{', '.join(map(_q, parts))}]"
        lines.add(f"      # {col}: ", f"TODO: the header of {guess.path.name} that holds {stream}.{col}, which "
                  f"is required{hint}")
    for note in plan.column_notes:
        lines.add(f"    # TODO: {note}")
    exports = _exports(plan.files, plan.resolved())
    date_format = _date_line(_surveys(con, exports), "sources.0.date_format", lines, "    ")
    deals = next((e for e in exports if e.stream == "deals"), None)
    if deals:
        _stages(lines, con, deals)
        if not deals.present.get("currency"):
            lines.add("    currency: USD", "TODO: the currency of the amounts; no column holds it")
    return date_format


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
