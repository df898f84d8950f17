"""Column-mapping profiles: how each CRM's export file maps onto canonical columns.

A profile names, for each canonical column, the headers that may hold it (the
first non-empty one wins), the year-first date formats its exports use, and how
to tell won from lost when the export has no flag columns. Day-first or
month-first dates are not a profile's to assume (a CRM writes them in its user's
locale): connectors/files/dates.py decides their order per file. Nothing here
parses values: the staging SQL does that once, for every source alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from connectors.contract import CANONICAL_STREAMS

# Salesforce report exports end in a footer that is not data.
FOOTER_PATTERN = r"^(Grand Totals \(\d+ records?\)|Confidential Information.*|Copyright \(c\).*)$"



def normalise_header(header: str) -> str:
    """A header as matched: case, spaces, underscores and punctuation ignored ('close_date' is 'Close Date')."""
    return re.sub(r"[\W_]+", "", header.casefold())


@dataclass(frozen=True)
class Profile:
    """How one CRM's export files look."""

    name: str
    headers: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    # strptime formats for year-first dates that are not ISO 8601 (tried in order).
    date_formats: tuple[str, ...] = ()
    # Whether day/month dates (06/07/2025) are read without date_format/dayfirst in the config:
    # canonical files promise ISO 8601, so there such a value is a row error unless configured.
    day_month_dates: bool = True
    # Canonical key column -> the headers whose values, combined, name a record (no id column).
    composite: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Where the export has no is_closed/is_won flags, they come from this column's value.
    status_column: str = "stage"
    won_values: tuple[str, ...] = ()
    lost_values: tuple[str, ...] = ()
    deleted_values: tuple[str, ...] = ()
    # Report exports end in short footer lines; reading those needs padding (and a serial read).
    has_footer: bool = False
    # Columns the user's column map names: read from that header only.
    mapped: frozenset[str] = frozenset()

    def headers_for(self, stream: str) -> dict[str, tuple[str, ...]]:
        """Accepted headers per canonical column; the canonical name is accepted too, unless the
        column is mapped (a mapped header that is empty must not fall back to another column)."""
        own = self.headers.get(stream, {})
        canonical = CANONICAL_STREAMS[stream].columns
        return {col: own[col] if col in self.mapped else (*own.get(col, ()), col) for col in canonical} | {
            col: heads for col, heads in own.items() if col not in canonical
        }


CANONICAL = Profile(name="canonical", day_month_dates=False)

HUBSPOT_EXPORT = Profile(
    name="hubspot_export",
    headers={
        "deals": {
            "deal_id": ("Record ID",),
            "deal_name": ("Deal Name",),
            "account_id": ("Associated Company IDs", "Associated Company"),
            "owner_id": ("Deal owner", "Deal Owner"),
            "pipeline": ("Pipeline",),
            "stage": ("Deal Stage",),
            "amount": ("Amount",),
            "currency": ("Currency", "Deal currency code"),
            "created_at": ("Create Date",),
            "closed_at": ("Close Date",),
            "updated_at": ("Last Modified Date",),
        },
        "deal_stage_history": {
            "deal_id": ("Record ID",),
            "stage": ("Deal Stage",),
            "entered_at": ("Date entered stage",),
        },
        "customers": {
            "customer_id": ("Record ID",),
            "name": ("Company name", "Company Name"),
            "started_at": ("Create Date", "Became a Customer Date"),
            "churned_at": ("Churn Date", "Churned Date"),
        },
    },
    date_formats=("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"),
    won_values=("Closed Won", "closedwon"),
    lost_values=("Closed Lost", "closedlost"),
)

SALESFORCE_EXPORT = Profile(
    name="salesforce_export",
    headers={
        "deals": {
            "deal_id": ("Opportunity ID", "Opportunity ID (18)"),
            "deal_name": ("Opportunity Name",),
            "account_id": ("Account ID", "Account Name"),
            "owner_id": ("Opportunity Owner",),
            "pipeline": ("Type", "Opportunity Record Type"),
            "stage": ("Stage",),
            "is_closed": ("Closed",),
            "is_won": ("Won",),
            "amount": ("Amount",),
            "currency": ("Amount Currency", "Opportunity Currency"),
            "created_at": ("Created Date",),
            "closed_at": ("Close Date",),
            "updated_at": ("Last Modified Date",),
        },
        "deal_stage_history": {
            "deal_id": ("Opportunity ID",),
            "stage": ("To Stage", "Stage"),
            "entered_at": ("Edit Date", "Last Modified"),
        },
        "customers": {
            "customer_id": ("Account ID",),
            "name": ("Account Name",),
            "started_at": ("Customer Since", "Created Date"),
            "churned_at": ("Churn Date",),
        },
    },
    won_values=("Closed Won",),
    lost_values=("Closed Lost",),
    has_footer=True,
)

PIPEDRIVE_EXPORT = Profile(
    name="pipedrive_export",
    headers={
        "deals": {
            "deal_id": ("Deal - ID",),
            "deal_name": ("Deal - Title",),
            "account_id": ("Deal - Organization", "Deal - Organization ID"),
            "owner_id": ("Deal - Owner",),
            "pipeline": ("Deal - Pipeline",),
            "stage": ("Deal - Stage",),
            "status": ("Deal - Status",),
            "amount": ("Deal - Value",),
            "currency": ("Deal - Currency",),
            "created_at": ("Deal - Deal created",),
            "closed_at": ("Deal - Won time", "Deal - Lost time", "Deal - Deal closed on"),
            "updated_at": ("Deal - Update time",),
        },
        "customers": {
            "customer_id": ("Organization - ID",),
            "name": ("Organization - Name",),
            "started_at": ("Organization - Organization created",),
            "churned_at": ("Organization - Churn date",),
        },
    },
    date_formats=("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"),
    status_column="status",
    won_values=("won",),
    lost_values=("lost",),
    deleted_values=("deleted",),
)

CUSTOM = Profile(name="custom", date_formats=("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"))

PROFILES = {p.name: p for p in (CANONICAL, HUBSPOT_EXPORT, SALESFORCE_EXPORT, PIPEDRIVE_EXPORT, CUSTOM)}


def resolve_profile(
    name: str, columns: dict[str, str | list[str]], won_stages: list[str], lost_stages: list[str]
) -> Profile:
    """The profile a source names, with the user's column map and won/lost stage lists applied.

    `columns` maps a canonical name to the header that holds it (instead of the profile's) or,
    for a key column, to the list of headers whose values combined make the key.
    """
    base = PROFILES[name]
    mapped = {col: header for col, header in columns.items() if isinstance(header, str)}
    headers = {stream: dict(base.headers.get(stream, {})) for stream in CANONICAL_STREAMS}
    for stream, own in headers.items():
        own.update({col: (header,) for col, header in mapped.items() if col in CANONICAL_STREAMS[stream].columns})
    return replace(
        base,
        headers=headers,
        mapped=frozenset(mapped),
        composite={col: tuple(parts) for col, parts in columns.items() if not isinstance(parts, str)},
        won_values=tuple(won_stages) or base.won_values,
        lost_values=tuple(lost_stages) or base.lost_values,
    )
