"""Structured run logs: one JSON object per event, so a log shipper can count and alert.

Each event carries the asset, the source where there is one, rows in/out or
quarantined, retries and duration: the figures an on-call engineer checks first.
"""

from __future__ import annotations

import json

import dagster as dg


def log_event(context: dg.AssetExecutionContext, event: str, **fields: object) -> None:
    """Log `event` as one JSON line (values must already be free of secrets)."""
    record = {"event": event, "run_id": context.run.run_id, "asset": context.asset_key.to_user_string(), **fields}
    context.log.info(json.dumps(record, default=str, sort_keys=True))
