"""Structured run logs: one JSON object per event, so a log shipper can count and alert.

Each event carries the asset, the source where there is one, rows in/out or
quarantined, retries and duration: the figures an on-call engineer checks first.
"""

from __future__ import annotations

import json
import logging

import dagster as dg


def log_event(context: dg.AssetExecutionContext, event: str, **fields: object) -> None:
    """Log `event` as one JSON line (values must already be free of secrets)."""
    record = {"event": event, "run_id": context.run.run_id, "asset": context.asset_key.to_user_string(), **fields}
    context.log.info(json.dumps(record, default=str, sort_keys=True))


@dg.logger(
    config_schema={"path": dg.Field(str), "log_level": dg.Field(str, default_value="DEBUG")},
    description="Every event of the run, stack traces included, into one file (the CLI's full log).",
)
def file_log(init_context: dg.InitLoggerContext) -> logging.Logger:
    config = init_context.logger_config
    logger = logging.getLogger(f"crm_roi.run.{init_context.run_id}")
    handler = logging.FileHandler(config["path"], mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(config["log_level"])
    logger.propagate = False
    return logger
