"""The canonical data contract: what every source lands in raw, and on what terms.

Export files and API connectors produce the same streams with the same textual
columns, and both land them in raw through `typed_rows`: each value is parsed
once, at landing, by the parsers of sql/macros.sql, so one staging model per
stream serves every CRM and never parses again. The warehouse, the file reader,
the connectors and the sync all read the contract from here: a column, a key or
a stream added here is added everywhere, and cannot drift between the side that
writes raw and the side that reads it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlsplit

# What a canonical column holds. Sources produce text; landing parses it into the kind's type.
TEXT, BOOL, NUMBER, TIMESTAMP, DATE = "text", "bool", "number", "timestamp", "date"
# The raw column type of each kind, and the sql/macros.sql parser that reads it from text.
SQL_TYPES = {TEXT: "VARCHAR", BOOL: "BOOLEAN", NUMBER: "DOUBLE", TIMESTAMP: "TIMESTAMP", DATE: "DATE"}
PARSERS = {BOOL: "parse_bool", NUMBER: "parse_number", TIMESTAMP: "parse_ts", DATE: "parse_date"}
# The text of a row that held a value its parser could not read: raw.<stream>._text, null otherwise.
TEXT_COLUMN = "_text"


@dataclass(frozen=True)
class CanonicalStream:
    """One canonical stream: its raw table's columns, those a file must have, and its key.

    `required`: the others are optional (is_deleted defaults to false, updated_at to
    the later of created_at and closed_at, currency to the profile's or the base
    currency, a customer's is_customer to true, the rest to null). `key`: the
    column whose text names one record, so rows with the same key are versions of
    it; None where a record is named by several columns or a parsed value
    (fx_rates, crm_usage) or rows are events (deal_stage_history).
    """

    name: str
    columns: dict[str, str]  # column -> kind, in raw's column order
    required: tuple[str, ...]
    key: str | None = None


CANONICAL_STREAMS: dict[str, CanonicalStream] = {
    stream.name: stream
    for stream in (
        CanonicalStream(
            "deals",
            {
                "deal_id": TEXT, "deal_name": TEXT, "account_id": TEXT, "owner_id": TEXT,
                "pipeline": TEXT, "stage": TEXT, "is_closed": BOOL, "is_won": BOOL,
                "amount": NUMBER, "currency": TEXT, "created_at": TIMESTAMP,
                "closed_at": TIMESTAMP, "updated_at": TIMESTAMP, "is_deleted": BOOL, "segment": TEXT,
            },
            required=("deal_id", "created_at", "closed_at", "amount", "is_closed", "is_won"),
            key="deal_id",
        ),
        CanonicalStream(
            "deal_stage_history",
            {"deal_id": TEXT, "stage": TEXT, "entered_at": TIMESTAMP},
            required=("deal_id", "stage", "entered_at"),
        ),
        CanonicalStream(
            "customers",
            {
                "customer_id": TEXT, "name": TEXT, "started_at": TIMESTAMP,
                "churned_at": TIMESTAMP, "mrr": NUMBER, "is_deleted": BOOL,
                # A CRM's accounts land whether or not they are customers: is_customer is what the
                # CRM says (null: yes), created_at when the record was made; staging decides.
                "is_customer": BOOL, "created_at": TIMESTAMP,
            },
            required=("customer_id", "started_at", "churned_at"),
            key="customer_id",
        ),
        CanonicalStream(
            "finance_gl",
            {
                "entry_id": TEXT, "posted_on": DATE, "account": TEXT, "description": TEXT,
                "vendor": TEXT, "amount": NUMBER, "currency": TEXT,
            },
            required=("entry_id", "posted_on", "account", "amount"),
            key="entry_id",
        ),
        CanonicalStream(
            "fx_rates",
            {"date": DATE, "currency": TEXT, "rate_to_base": NUMBER},
            required=("date", "currency", "rate_to_base"),
        ),
        CanonicalStream(
            "csat",
            {"response_id": TEXT, "customer_id": TEXT, "responded_at": TIMESTAMP, "score": NUMBER},
            required=("response_id", "responded_at", "score"),
            key="response_id",
        ),
        CanonicalStream(
            "crm_usage",
            {"period_start": DATE, "active_users": NUMBER, "licensed_seats": NUMBER},
            required=("period_start", "active_users", "licensed_seats"),
        ),
    )
}


def typed_rows(stream: str, text: dict[str, str], rows: str) -> str:
    """SQL: the rows of `rows` (a FROM clause) as raw.<stream>'s canonical columns and `_text`.

    `text` gives each canonical column's value as landed text (a SQL expression over `rows`;
    a column left out is null). Each value is parsed once, by its kind's parser, in the same
    vectorised pass as the read. A row holding a value that does not parse keeps the text of
    all its values in `_text` (a map column -> text), which is what staging's row rules and
    quarantine read: "unparseable" is a value that is null with text beside it, "missing" one
    without. Every other row stores typed values only, which is the point: text is what made
    landing and staging slow. Expressions are this module's callers' own (headers quoted, values bound), never data.
    """
    columns = CANONICAL_STREAMS[stream].columns
    as_text = ", ".join(f"{text.get(column, 'CAST(NULL AS VARCHAR)')} AS \"_t_{column}\"" for column in columns)
    typed = ", ".join(f"{PARSERS[kind]}(\"_t_{column}\") AS {column}" if kind in PARSERS
                      else f"\"_t_{column}\" AS {column}" for column, kind in columns.items())
    failed = " OR ".join(f"({column} IS NULL AND \"_t_{column}\" IS NOT NULL)"
                         for column, kind in columns.items() if kind in PARSERS)
    kept = ", ".join(f"'{column}': \"_t_{column}\"" for column in columns)
    return (f"SELECT {', '.join(columns)}, CASE WHEN {failed} THEN MAP {{{kept}}} END AS {TEXT_COLUMN} "  # noqa: S608
            f"FROM (SELECT *, {typed} FROM (SELECT {as_text} {rows}))")


# The vendor streams each kind of API source syncs, in order (companies/accounts feed customers).
API_STREAMS: dict[str, tuple[str, ...]] = {
    "hubspot": ("deals", "companies"),
    "salesforce": ("opportunities", "accounts"),
    "pipedrive": ("deals", "organizations"),
}
# The canonical streams (raw tables) each vendor stream writes.
API_STREAM_TABLES: dict[str, tuple[str, ...]] = {
    "deals": ("deals", "deal_stage_history"),
    "opportunities": ("deals", "deal_stage_history"),
    "companies": ("customers",),
    "accounts": ("customers",),
    "organizations": ("customers",),
}

_LOCAL_HOSTS = ("127.0.0.1", "localhost")


def require_tls(url: str, what: str) -> str:
    """`url` without its trailing slash, if tokens sent to it travel over TLS.

    Plain http is allowed only to this machine (the fake CRMs in tests and the
    demo). The host is compared whole, so http://localhost.example.com is refused.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [IPv6] host
        parts = urlsplit("")
    if parts.hostname and (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS)):
        return url.rstrip("/")
    raise ValueError(f"{what} '{url}' must be an https:// URL (plain http only for 127.0.0.1/localhost)")


def utc_iso(moment: dt.datetime, whole_seconds: bool = False) -> str:
    """`moment` as ISO 8601 in UTC with milliseconds and Z, e.g. 2025-01-31T09:30:00.000Z.

    Every timestamp and cursor a connector emits has this one shape, so raw text
    from any CRM compares and sorts alike. A naive `moment` is taken as local time.
    `whole_seconds` floors to the second, for filters whose documented form has no
    fraction (SOQL datetime literals, Pipedrive's updated_since).
    """
    moment = moment.astimezone(dt.UTC)
    if whole_seconds:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
