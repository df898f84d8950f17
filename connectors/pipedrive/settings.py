"""Pipedrive endpoints, page sizes and limits (CRM_APIS.md §3).

Deals and organizations come from API v2 (cursor paging, RFC 3339 times, a
cheaper token cost); stage history only exists in v1 (`/deals/{id}/flow`), and
so do the field definitions we resolve `columns` against.
"""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.pipedrive.com"

# API v2: cursor-paginated lists (additional_data.next_cursor, null at the end).
DEALS = "/api/v2/deals"
ARCHIVED_DEALS = "/api/v2/deals/archived"
ORGANIZATIONS = "/api/v2/organizations"
STAGES = "/api/v2/stages"
PIPELINES = "/api/v2/pipelines"

# API v1: start/limit lists (additional_data.pagination.more_items_in_collection / next_start).
DEAL_FLOW = "/api/v1/deals/{deal_id}/flow"
DEAL_FIELDS = "/api/v1/dealFields"
ORGANIZATION_FIELDS = "/api/v1/organizationFields"
CURRENT_USER = "/api/v1/users/me"

V2_PAGE_SIZE = 500  # the documented maximum for v2 lists
V1_PAGE_SIZE = 500  # the documented maximum for v1 lists
# Flow items other than dealChange (activities, notes, mails) are of no use here.
FLOW_ITEMS = "dealChange"
STAGE_FIELD_KEY = "stage_id"

# How many deals (with their stage histories) go into one committed page: a
# v2 page of 500 deals costs 500 flow requests, so checkpoint more often than that.
DEALS_PER_PAGE = 50

# The per-token rate window. The client-side window is a little longer than the
# server's, so network jitter between our clock and theirs never tips a burst into 429s.
RATE_WINDOW_S = 2.0
RATE_WINDOW_SLACK_S = 0.2
RATE_REMAINING_HEADER = "x-ratelimit-remaining"  # left in the token's 2-second window

# v2 statuses; "deleted" lists deals deleted up to 30 days ago (omitted, lists exclude them).
CLOSED_STATUSES = frozenset({"won", "lost"})
DELETED_STATUS = "deleted"
DELETED_RETENTION_DAYS = 30
