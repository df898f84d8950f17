"""The canonical contract (connectors/contract.py): consistent in itself, and the only rules of its kind."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from connectors.contract import API_STREAM_TABLES, API_STREAMS, CANONICAL_STREAMS, require_tls, utc_iso
from connectors.hubspot import HubSpotSource
from connectors.pipedrive import PipedriveSource
from connectors.salesforce import SalesforceSource


def test_every_stream_names_its_own_columns():
    for name, stream in CANONICAL_STREAMS.items():
        assert stream.name == name
        assert set(stream.required) <= set(stream.columns), name
        assert stream.key is None or stream.key in stream.required, name


def test_every_api_stream_writes_canonical_streams():
    assert {s for streams in API_STREAMS.values() for s in streams} == set(API_STREAM_TABLES)
    assert {t for tables in API_STREAM_TABLES.values() for t in tables} <= set(CANONICAL_STREAMS)
    connectors = {"hubspot": HubSpotSource, "salesforce": SalesforceSource, "pipedrive": PipedriveSource}
    assert {kind: c.streams for kind, c in connectors.items()} == API_STREAMS


@pytest.mark.parametrize("url", ["https://api.hubapi.com/", "http://127.0.0.1:8080/", "http://localhost"])
def test_tls_or_this_machine_is_accepted(url):
    assert require_tls(url, "base_url") == url.rstrip("/")


@pytest.mark.parametrize("url", [
    "http://api.pipedrive.com",
    "http://127.0.0.1.example.com",  # a prefix of a local address is not one
    "http://localhost.example.com",
    "http://localhost@example.com",  # user info, the host is example.com
    "ftp://localhost",
    "https://",
    "http://[::1",
])
def test_anything_else_is_refused_with_the_setting_named(url):
    with pytest.raises(ValueError, match=r"^login_url '.*' must be an https:// URL"):
        require_tls(url, "login_url")


def test_timestamps_are_utc_with_milliseconds():
    cet = dt.timezone(dt.timedelta(hours=1))
    assert utc_iso(dt.datetime(2025, 1, 31, 10, 30, tzinfo=cet)) == "2025-01-31T09:30:00.000Z"
    assert utc_iso(dt.datetime(2025, 1, 31, 9, 30, 0, 123999, tzinfo=dt.UTC)) == "2025-01-31T09:30:00.123Z"


def test_connectors_import_neither_dagster_nor_pipelines():
    """The connectors (and the contract) are plain Python: usable, and testable, without the pipeline."""
    script = (
        "import importlib, pkgutil, sys, connectors\n"
        "for m in pkgutil.walk_packages(connectors.__path__, 'connectors.'): importlib.import_module(m.name)\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'dagster', 'pipelines'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
