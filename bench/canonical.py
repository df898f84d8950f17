"""The canonical export files as the reference variants read them: one typed schema for both.

The bare-DuckDB and the pandas variants must read the same columns with the
same types, or their times would not be comparable; each maps these kinds to
its own engine's types. The cut-off comes from the generated crm_roi.yaml, so
all variants count the same events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import yaml

from connectors.contract import BOOL, DATE, NUMBER, TEXT, TIMESTAMP

# The contract's kinds, and whole numbers: the reference variants read counts as integers.
INTEGER = "integer"

SCHEMAS: dict[str, dict[str, str]] = {
    "deals": {
        "deal_id": TEXT, "deal_name": TEXT, "account_id": TEXT, "owner_id": TEXT, "pipeline": TEXT, "stage": TEXT,
        "is_closed": BOOL, "is_won": BOOL, "amount": NUMBER, "currency": TEXT, "created_at": TIMESTAMP,
        "closed_at": TIMESTAMP, "updated_at": TIMESTAMP, "is_deleted": BOOL,
    },
    "deal_stage_history": {"deal_id": TEXT, "stage": TEXT, "entered_at": TIMESTAMP},
    "customers": {"customer_id": TEXT, "name": TEXT, "started_at": TIMESTAMP, "churned_at": TIMESTAMP,
                  "mrr": NUMBER},
    "finance_gl": {"entry_id": TEXT, "posted_on": DATE, "account": TEXT, "description": TEXT, "vendor": TEXT,
                   "amount": NUMBER, "currency": TEXT},
    "fx_rates": {"date": DATE, "currency": TEXT, "rate_to_base": NUMBER},
    "csat": {"response_id": TEXT, "customer_id": TEXT, "responded_at": TIMESTAMP, "score": INTEGER},
    "crm_usage": {"period_start": DATE, "active_users": INTEGER, "licensed_seats": INTEGER},
}
BASE_CURRENCY = "USD"  # the generated config sets none, so crm-roi's default applies


def cutoff(folder: Path) -> dt.datetime:
    """Midnight UTC after the config's as_of: events before it count (crm-roi's rule)."""
    config = yaml.safe_load((folder / "crm_roi.yaml").read_text(encoding="utf-8"))
    return dt.datetime.combine(dt.date.fromisoformat(str(config["as_of"])) + dt.timedelta(days=1), dt.time())


def kpi_rows(months: Sequence, revenue: Sequence, won: Sequence) -> list[dict]:
    """The KPI series every variant reports for the cross-check: month, revenue won, deals won."""
    return [{"month": str(m)[:10], "revenue_won": float(r), "deals_won": int(w)}
            for m, r, w in zip(months, revenue, won, strict=True)]
