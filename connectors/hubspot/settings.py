"""HubSpot CRM v3: endpoints, property names, page sizes and budgets.

Numbers here are HubSpot's documented limits (developers.hubspot.com, API usage guidelines),
kept in one place so the connector and its tests agree on them.
"""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.hubapi.com"

# -- endpoints -----------------------------------------------------------------
PIPELINES_PATH = "/crm/v3/pipelines/deals"
ACCOUNT_DETAILS_PATH = "/account-info/v3/details"  # companyCurrency: the portal's home currency
OBJECTS_PATH = "/crm/v3/objects/{object_type}"
SEARCH_PATH = "/crm/v3/objects/{object_type}/search"
BATCH_READ_PATH = "/crm/v3/objects/{object_type}/batch/read"
PROPERTIES_PATH = "/crm/v3/properties/{object_type}"
DEAL_COMPANIES_PATH = "/crm/v4/associations/deals/companies/batch/read"

# -- page and batch sizes ---------------------------------------------------------
LIST_LIMIT = 100  # GET list maximum
HISTORY_LIST_LIMIT = 50  # GET list maximum with propertiesWithHistory
SEARCH_LIMIT = 200  # search maximum
BATCH_READ_LIMIT = 100  # batch/read inputs
HISTORY_BATCH_READ_LIMIT = 50  # batch/read inputs with propertiesWithHistory
ASSOCIATION_BATCH_LIMIT = 100  # v4 associations batch/read inputs

# -- budgets ----------------------------------------------------------------------
# Every endpoint except search shares the account's rolling 10-second budget
# (requests_per_10s); search is exempt from it and has its own 5/s, of which we use 4.
BURST_WINDOW_SECONDS = 10.0
SEARCH_REQUESTS_PER_SECOND = 4
BURST_REMAINING_HEADER = "X-HubSpot-RateLimit-Remaining"  # left in the 10-second window
# Our windows are a little longer than HubSpot's: requests reach HubSpot with
# varying latency, so a window exactly as long can still count one too many there.
LATENCY_MARGIN_SECONDS = 0.25
# HubSpot answers 414 once a URL grows past its limit (~8k characters of query);
# GET requests keep their query string under this, the rest of a long property
# list is read through batch/read, whose POST body has no such limit.
MAX_QUERY_CHARS = 7000

# -- properties -------------------------------------------------------------------
MODIFIED = "hs_lastmodifieddate"  # the cursor property for deals and companies
MERGED_IDS = "hs_merged_object_ids"  # ';'-joined ids merged into a record
STAGE = "dealstage"
PIPELINE = "pipeline"
CREATED = "createdate"
LIFECYCLE_STAGE = "lifecyclestage"
CUSTOMER_LIFECYCLE_STAGE = "customer"

# Canonical deal column -> default property; `columns` may point any of these elsewhere.
DEAL_COLUMNS = {
    "deal_name": "dealname",
    "owner_id": "hubspot_owner_id",
    "amount": "amount",
    "currency": "deal_currency_code",
    "created_at": CREATED,
    "closed_at": "closedate",
}
# Canonical deal columns HubSpot has no standard property for: read only when `columns` names one
# (e.g. `{segment: region}`, a custom deal property).
DEAL_OPTIONAL_COLUMNS = ("segment",)
# account_id comes from the deal's primary company association unless mapped to a property.
DEAL_ASSOCIATED_COLUMNS = ("account_id",)
# Amount properties HubSpot keeps in the portal's home currency, whatever the deal's currency.
HOME_CURRENCY_AMOUNTS = frozenset({
    "amount_in_home_currency", "hs_closed_amount_in_home_currency",
    "hs_projected_amount_in_home_currency",
})
# Read on every deal whatever the mapping: they drive metadata, cursor and merges.
DEAL_FIXED_PROPERTIES = (STAGE, PIPELINE, MODIFIED, MERGED_IDS)

# Canonical customer column -> default property (churned_at and mrr have no
# HubSpot default: they are read only when `columns` names a property).
CUSTOMER_COLUMNS = {"name": "name", "started_at": "hs_lifecyclestage_customer_date"}
CUSTOMER_OPTIONAL_COLUMNS = ("churned_at", "mrr")
COMPANY_FIXED_PROPERTIES = (CREATED, LIFECYCLE_STAGE, MODIFIED, MERGED_IDS)

# v3 list associations name the primary deal->company link "deal_to_company";
# v4 gives it associationTypes typeId 5 (HUBSPOT_DEFINED, label "Primary").
PRIMARY_COMPANY_TYPE = "deal_to_company"
PRIMARY_COMPANY_TYPE_ID = 5

# 429 bodies carry policyName; only the daily policy means "stop for today".
DAILY_POLICY = "DAILY"
