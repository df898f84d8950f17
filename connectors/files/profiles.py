"""Column-mapping profiles: how each CRM's export file maps onto canonical columns.

A profile names, for each canonical column, the headers that may hold it (the
first non-empty one wins), the date formats its exports use, and how to tell won
from lost when the export has no flag columns. Nothing here parses values: the
staging SQL does that once, for every source alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.contract import CANONICAL_STREAMS

# Salesforce report exports end in a footer that is not data.
FOOTER_PATTERN = r"^(Grand Totals \(\d+ records?\)|Confidential Information.*|Copyright \(c\).*)$"


@dataclass(frozen=True)
class Profile:
    """How one CRM's export files look."""

    name: str
    headers: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    # strptime formats for dates that are not ISO 8601 (tried in order).
    date_formats: tuple[str, ...] = ()
    # Where the export has no is_closed/is_won flags, they come from this column's value.
    status_column: str = "stage"
    won_values: tuple[str, ...] = ()
    lost_values: tuple[str, ...] = ()
    deleted_values: tuple[str, ...] = ()
    # Report exports end in short footer lines; reading those needs padding (and a serial read).
    has_footer: bool = False

    def headers_for(self, stream: str) -> dict[str, tuple[str, ...]]:
        """Accepted headers per canonical column; canonical names are always accepted."""
        own = self.headers.get(stream, {})
        canonical = CANONICAL_STREAMS[stream].columns
        return {col: (*own.get(col, ()), col) for col in canonical} | {
            col: heads for col, heads in own.items() if col not in canonical
        }


CANONICAL = Profile(name="canonical")

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
    date_formats=("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y"),
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
    date_formats=("%m/%d/%Y", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M"),
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

PROFILES = {p.name: p for p in (CANONICAL, HUBSPOT_EXPORT, SALESFORCE_EXPORT, PIPEDRIVE_EXPORT)}


def custom_profile(columns: dict[str, str], won_stages: list[str], lost_stages: list[str]) -> Profile:
    """A profile from the user's config: `columns` maps canonical name -> header."""
    by_stream = {
        name: {col: (columns[col],) for col in stream.columns if col in columns}
        for name, stream in CANONICAL_STREAMS.items()
    }
    return Profile(
        name="custom",
        headers=by_stream,
        date_formats=("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%m/%d/%Y", "%d.%m.%Y"),
        won_values=tuple(won_stages),
        lost_values=tuple(lost_stages),
    )


def resolve_profile(
    name: str, columns: dict[str, str], won_stages: list[str], lost_stages: list[str]
) -> Profile:
    """The profile a source names, with the user's won/lost stage lists applied."""
    if name == "custom":
        return custom_profile(columns, won_stages, lost_stages)
    base = PROFILES[name]
    if not won_stages and not lost_stages:
        return base
    return Profile(
        name=base.name,
        headers=base.headers,
        date_formats=base.date_formats,
        status_column=base.status_column,
        won_values=tuple(won_stages) or base.won_values,
        lost_values=tuple(lost_stages) or base.lost_values,
        deleted_values=base.deleted_values,
        has_footer=base.has_footer,
    )
