"""Turn an API source's config into a live connector (connectors/<crm>/).

Secrets are read from the environment here, at the last moment, and handed to
the connector's redactor so they cannot leak into a log line or an error.
"""

from __future__ import annotations

from connectors.records import ApiSource
from pipelines.config import HubSpotSource, PipedriveSource, SalesforceSource, read_secret


def open_connector(
    config: HubSpotSource | SalesforceSource | PipedriveSource, client_options: dict | None = None
) -> ApiSource:
    """The connector for one configured source; `client_options` tune the HTTP client beyond the config (tests)."""
    retries = {"max_attempts": config.retry_attempts, "backoff_max": config.retry_max_wait_seconds}
    options = {"columns": dict(config.columns), "lookback_minutes": config.lookback_minutes,
               "client_options": {**retries, **(client_options or {})}}
    if config.base_url:
        options["base_url"] = config.base_url
    if isinstance(config, HubSpotSource):
        from connectors.hubspot import HubSpotSource as Connector

        return Connector(read_secret(config.token), requests_per_10s=config.requests_per_10s, **options)
    if isinstance(config, SalesforceSource):
        from connectors.salesforce import SalesforceSource as Connector

        secrets = {
            key: read_secret(getattr(config, key)) if getattr(config, key) else None
            for key in ("token", "client_id", "client_secret", "refresh_token")
        }
        return Connector(login_url=config.login_url, api_version=config.api_version,
                         use_bulk=config.bulk, **secrets, **options)
    from connectors.pipedrive import PipedriveSource as Connector

    return Connector(read_secret(config.token), requests_per_2s=config.requests_per_2s, **options)
