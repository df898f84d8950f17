"""The names things are known by in exports: each canonical column's headers, and stage names.

For headers, one table (what `crm-roi init` matches an export against): the
canonical name, then the common names CRMs and ledgers use (below), then every
header the export profiles know. Headers compare normalised (case, spaces,
underscores and punctuation ignored), so 'Close Date', 'close_date' and
'CLOSE-DATE' are one entry. Earlier entries are the better evidence. Stage names
that read like won, lost or closed serve both `init` (won/lost stages) and the
stage map's check (closed-looking stages counted open).
"""

from __future__ import annotations

from functools import cache

from connectors.contract import CANONICAL_STREAMS
from connectors.files.profiles import PROFILES, normalise_header

COMMON_HEADERS: dict[str, dict[str, tuple[str, ...]]] = {
    "deals": {
        "deal_id": ("Deal ID", "Opportunity ID", "Opp ID", "ID", "Deal Number", "Deal No", "Deal Ref"),
        "deal_name": ("Deal Name", "Opportunity Name", "Name", "Title", "Deal Title", "Subject"),
        "account_id": ("Account ID", "Company ID", "Account", "Company", "Account Name", "Company Name",
                       "Customer", "Customer Name", "Client", "Organization", "Organisation"),
        "owner_id": ("Owner", "Deal Owner", "Sales Owner", "Sales Rep", "Salesperson", "Sales Agent",
                     "Account Manager", "Assigned To", "Assigned User", "Rep"),
        "pipeline": ("Pipeline", "Deal Type", "Sales Pipeline", "Business Line"),
        "stage": ("Stage", "Deal Stage", "Sales Stage", "Pipeline Stage", "Opportunity Stage", "Stage Name", "Status",
                  "Deal Status", "Phase"),
        "is_closed": ("Is Closed", "Closed"),
        "is_won": ("Is Won", "Won"),
        "amount": ("Amount", "Deal Value", "Deal Amount", "Value", "Opportunity Amount", "Close Value",
                   "Revenue", "Total"),
        "currency": ("Currency", "Currency Code", "Deal Currency"),
        "created_at": ("Create Date", "Created Date", "Created", "Created On", "Created At", "Creation Date",
                       "Date Created", "Opened", "Open Date", "Engage Date"),
        "closed_at": ("Close Date", "Closed Date", "Closed On", "Closed At", "Closing Date", "Date Closed",
                      "Won Date", "Close Time"),
        "updated_at": ("Last Modified Date", "Last Modified", "Updated At", "Updated", "Last Updated",
                       "Modified", "Modified On", "Last Change", "Last Changed"),
        "is_deleted": ("Is Deleted", "Deleted"),
    },
    "deal_stage_history": {
        "deal_id": ("Deal ID", "Opportunity ID", "Opp ID", "Deal"),
        "stage": ("Stage", "To Stage", "New Stage", "Stage Name"),
        "entered_at": ("Entered At", "Date Entered Stage", "Entered Stage", "Changed At", "Changed On",
                       "Stage Date", "Edit Date"),
    },
    "customers": {
        "customer_id": ("Customer ID", "Account ID", "Company ID", "Client ID", "Organization ID", "ID"),
        "name": ("Name", "Customer Name", "Company Name", "Account Name", "Client Name", "Company"),
        "started_at": ("Customer Since", "Start Date", "Started", "Started On", "Since", "Became Customer",
                       "Signup Date"),
        "churned_at": ("Churn Date", "Churned", "Churned On", "Churned At", "End Date", "Cancelled On",
                       "Cancellation Date"),
        "mrr": ("MRR", "Monthly Revenue", "Monthly Recurring Revenue"),
        "is_deleted": ("Is Deleted", "Deleted"),
    },
    "finance_gl": {
        "entry_id": ("Entry ID", "Journal ID", "Journal No", "Journal Number", "Journal Entry", "Transaction ID",
                     "Line ID", "Document Number",
                     "Document No", "Voucher", "Reference", "Ref"),
        "posted_on": ("Posting Date", "Posted On", "Posted", "Date", "Transaction Date", "Entry Date", "GL Date",
                      "Booking Date"),
        "account": ("Account", "GL Account", "Account Number", "Account No", "Account Code", "Nominal Code",
                    "Ledger Account"),
        "description": ("Description", "Memo", "Narrative", "Details", "Text", "Line Description"),
        "vendor": ("Vendor", "Supplier", "Payee", "Vendor Name", "Supplier Name"),
        "amount": ("Amount", "Net Amount", "Net", "Value"),
        "currency": ("Currency", "Currency Code", "CCY"),
    },
    "fx_rates": {
        "date": ("Date", "Rate Date", "Effective Date", "As Of"),
        "currency": ("Currency", "Currency Code", "CCY", "From Currency"),
        "rate_to_base": ("Rate", "Exchange Rate", "FX Rate", "Rate To Base", "Conversion Rate"),
    },
    "csat": {
        "response_id": ("Response ID", "Survey Response ID", "Survey ID", "ID"),
        "customer_id": ("Customer ID", "Account ID", "Company ID"),
        "responded_at": ("Responded At", "Response Date", "Submitted At", "Submitted", "Date"),
        "score": ("Score", "Rating", "CSAT", "Satisfaction"),
    },
    "crm_usage": {
        "period_start": ("Period Start", "Month", "Period", "Week"),
        "active_users": ("Active Users", "Users Active", "MAU"),
        "licensed_seats": ("Licensed Seats", "Seats", "Licenses", "Licences", "Paid Seats"),
    },
}

# Stage names that read like a won, a lost, or just a closed deal, in the languages CRMs are set up
# in; matched against lower-cased stage names.
WON_STAGE_WORDS = r"(^|[^a-z])(won|win)([^a-z]|$)|gagn|ganad|gewonnen|vint[oa]"
LOST_STAGE_WORDS = r"(^|[^a-z])(lost|loss)([^a-z]|$)|perdu|perdid|verloren|pers[oa]([^a-z]|$)"
CLOSED_STAGE_WORDS = rf"closed|fechad|cerrad|chius|{WON_STAGE_WORDS}|{LOST_STAGE_WORDS}"


@cache
def synonyms(stream: str) -> dict[str, tuple[str, ...]]:
    """Every header known to hold each of the stream's canonical columns, best evidence first,
    one per normalised form."""
    table = {}
    for col in CANONICAL_STREAMS[stream].columns:
        names = [col, *COMMON_HEADERS.get(stream, {}).get(col, ())]
        names += [h for profile in PROFILES.values() for h in profile.headers.get(stream, {}).get(col, ())]
        by_form: dict[str, str] = {}
        for name in names:
            by_form.setdefault(normalise_header(name), name)
        table[col] = tuple(by_form.values())
    return table
