"""Salesforce endpoints, field lists, page and chunk sizes, and quota shares (CRM_APIS.md §2)."""

from __future__ import annotations

import datetime as dt

TOKEN_PATH = "/services/oauth2/token"
QUERY_RESOURCE = "queryAll"  # includes deleted and merged rows (IsDeleted), which `query` hides
BULK_JOBS = "jobs/query"

# Opportunity field per canonical deals column. `pipeline` and `currency` depend on the org
# (record types, multi-currency) and are chosen after describe; `columns` may override the
# text columns below, never the flags and stamps the sync's correctness rests on.
DEAL_FIELDS = {
    "deal_id": "Id", "deal_name": "Name", "account_id": "AccountId", "owner_id": "OwnerId",
    "stage": "StageName", "is_closed": "IsClosed", "is_won": "IsWon", "amount": "Amount",
    "created_at": "CreatedDate", "closed_at": "CloseDate", "updated_at": "SystemModstamp",
    "is_deleted": "IsDeleted",
}
# segment has no standard Opportunity field: it is read only when `columns` names one (e.g. Region__c).
DEAL_COLUMNS_SETTABLE = frozenset({
    "deal_name", "account_id", "owner_id", "pipeline", "segment", "stage", "amount", "currency", "created_at",
    "closed_at",
})
PIPELINE_FIELD_RECORD_TYPES = "RecordType.DeveloperName"  # orgs with Opportunity record types
PIPELINE_FIELD_DEFAULT = "Type"
CURRENCY_FIELD = "CurrencyIsoCode"  # exists only in multi-currency orgs

# Every Account lands; staging keeps the customers (connectors/contract.py). started_at is
# set only through `columns` (e.g. a Customer_Since__c field): by default staging derives it.
CUSTOMER_FIELDS = {"customer_id": "Id", "name": "Name", "created_at": "CreatedDate", "is_deleted": "IsDeleted"}
CUSTOMER_COLUMNS_SETTABLE = frozenset({"name", "started_at", "churned_at", "mrr"})
ACCOUNT_TYPE_FIELD = "Type"
# The Account.Type picklist values that mean a customer in the picklist Salesforce ships.
CUSTOMER_TYPES = ("Customer - Direct", "Customer - Channel")

HISTORY_FIELDS = ("OpportunityId", "StageName", "CreatedDate")
# Ids per `OpportunityId IN (...)` query: 500 URL-encoded ids are ~13.5k characters, under
# the 16,384-byte limit on a REST URI.
HISTORY_IDS_PER_QUERY = 500

# Stop before this run uses more than 25% of the org's daily API requests, or before the
# org passes 80% in total (tap-salesforce's quota_percent_per_run / quota_percent_total):
# the CRM's other integrations and users share the same daily budget.
QUOTA_SHARE_PER_RUN = 0.25
QUOTA_SHARE_TOTAL = 0.80

# QUERY_TIMEOUT halves the SystemModstamp window; below this the query is hopeless over REST.
MIN_QUERY_WINDOW = dt.timedelta(minutes=1)

BULK_MAX_RECORDS = 10_000  # rows per results request (one page of rows committed at a time)
BULK_POLL_FIRST = 0.25  # seconds before the first status check, doubling up to BULK_POLL_MAX
BULK_POLL_MAX = 10.0
BULK_TIMEOUT = 3600.0
BULK_NOT_ENABLED = frozenset({"FeatureNotEnabled", "FEATURENOTENABLED"})  # then REST queryAll
