"""The demo: the nightly job on the bundled demo exports, from files or from a fake HubSpot."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from pipelines.config import Settings, load_settings
from pipelines.runner import RunOutcome, run_nightly
from pipelines.sql_files import bundled

DEMO_DATA = bundled("demo_data", "data/sample")
DEMO_CONFIG = DEMO_DATA / "crm_roi.yaml"
DEMO_TOKEN_VARIABLE = "CRM_ROI_DEMO_HUBSPOT_TOKEN"


class DemoUnavailable(RuntimeError):
    """The live demo needs the optional `demo` dependencies."""


def _with_db(settings: Settings, db_path: Path) -> Settings:
    return settings.model_copy(update={"duckdb_path": db_path.resolve()})


def run_demo(db_path: Path) -> tuple[Settings, RunOutcome]:
    """The nightly job on the demo exports, into `db_path` (no server, no credentials)."""
    settings = _with_db(load_settings(DEMO_CONFIG), db_path)
    return settings, run_nightly(settings)


def run_live_demo(db_path: Path, say: Callable[[str], None]) -> tuple[Settings, RunOutcome]:
    """The demo with deals and companies served by a fake HubSpot on 127.0.0.1.

    A new user sees a real sync (paging, rate limits, incremental cursor) without an
    account: the fake holds the demo's deals, the config points at it, and a second
    run shows the incremental sync fetching only what changed. Returns the settings
    and the first run's outcome.
    """
    try:
        from connectors.fakes.hubspot import FakeHubSpot
    except ImportError:
        raise DemoUnavailable(
            "crm-roi demo --live serves a fake HubSpot, which needs the demo extra: pip install 'crm-roi[demo]'"
        ) from None
    token = secrets.token_urlsafe(24)
    os.environ[DEMO_TOKEN_VARIABLE] = token  # the config names the token as env:..., as a real one would
    fake = FakeHubSpot.from_canonical(DEMO_DATA, token=token)
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    with fake.running(), tempfile.TemporaryDirectory() as folder:
        config["sources"] = [
            {"kind": "hubspot", "name": "hubspot", "token": f"env:{DEMO_TOKEN_VARIABLE}",
             "base_url": fake.base_url, "columns": {"churned_at": "churn_date", "mrr": "mrr"}},
            {"kind": "files", "name": "demo_files", "path": str(DEMO_DATA),
             "files": {"deals": None, "deal_stage_history": None, "customers": None}},
        ]
        config["finance"]["path"] = str(DEMO_DATA / config["finance"]["path"])
        config["data_roots"] = [folder, str(DEMO_DATA)]
        live_config = Path(folder) / "crm_roi.yaml"
        live_config.write_text(yaml.safe_dump(config), encoding="utf-8")
        settings = _with_db(load_settings(live_config), db_path)
        say(f"fake HubSpot on {fake.base_url}: {len(fake.deals):,} deals, {len(fake.companies):,} companies")
        outcome = run_nightly(settings)
        say(f"full sync: {len(fake.log):,} HTTP requests")
        first = len(fake.log)
        fake.update_deals(list(fake.deals)[:25], name="Renamed in the CRM")
        run_nightly(settings)
        say(f"incremental sync after 25 deals changed: {len(fake.log) - first:,} HTTP requests")
    return settings, outcome
