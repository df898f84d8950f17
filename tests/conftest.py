"""Shared fixtures: small export folders written by the tests, and the pipeline run on them.

`build_project` runs the same Python and SQL the Dagster assets run (load raw,
build staging with quarantine, build the marts), without Dagster, so a rule's
test is fast and its hand-worked numbers are the only thing it asserts.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

from connectors.contract import API_STREAMS, CANONICAL_STREAMS
from pipelines.api_sync import sync_stream
from pipelines.config import Settings, load_settings
from pipelines.raw_files import load_stream, stream_inputs
from pipelines.transform import MART_TABLES, STAGING_TABLES, build_mart, build_staging
from pipelines.warehouse import connect, open_with_raw

# The console script of this environment: tests run the command as a user does.
CRM_ROI = str(Path(sys.executable).parent / "crm-roi")

DEAL_COLUMNS = [
    "deal_id", "deal_name", "account_id", "owner_id", "pipeline", "stage", "is_closed",
    "is_won", "amount", "currency", "created_at", "closed_at", "updated_at",
]
GL_COLUMNS = ["entry_id", "posted_on", "account", "description", "vendor", "amount", "currency"]
# Retries against a fake server need not wait like they would against a vendor.
FAST_CLIENT = {"backoff_multiplier": 0.01, "backoff_max": 0.2, "timeout": (2.0, 5.0)}
ACCOUNTS = {
    "6100": "crm_software", "6110": "crm_implementation", "6120": "crm_training",
    "6130": "crm_support", "6140": "crm_hardware", "6200": "sales_marketing",
    "6300": "operating_cost",
}


def crm_roi(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`crm-roi <args>` in a real process, its output captured."""
    return subprocess.run([CRM_ROI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def uv() -> str:
    found = Path(__file__).resolve().parent.parent / ".tools" / "bin" / "uv"
    path = str(found) if found.exists() else shutil.which("uv")
    assert path, "uv is needed to build the wheel: `make setup` installs it into .tools/"
    return path


def run_ok(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def write_csv(path: Path, columns: list[str], rows: list[dict | list]) -> Path:
    """Write rows (dicts keyed by column, or lists in column order) as a CSV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns] if isinstance(row, dict) else row)
    return path


def deal(deal_id: str, created: str, closed: str = "", won: bool | None = None,
         amount: str = "1000", currency: str = "USD", **extra: str) -> dict:
    """A canonical deal row: open when `won` is None, else closed won or lost at `closed`."""
    is_closed = won is not None
    return {
        "deal_id": deal_id, "deal_name": f"Deal {deal_id}", "account_id": "A1", "owner_id": "U1",
        "pipeline": "default",
        "stage": "open" if not is_closed else ("closedwon" if won else "closedlost"),
        "is_closed": str(is_closed).lower(), "is_won": str(bool(won)).lower(),
        "amount": amount, "currency": currency, "created_at": created, "closed_at": closed,
        "updated_at": "", **extra,
    }


def gl(entry_id: str, posted_on: str, account: str, amount: str, currency: str = "USD") -> dict:
    return {"entry_id": entry_id, "posted_on": posted_on, "account": account,
            "description": "", "vendor": "", "amount": amount, "currency": currency}


def write_config(folder: Path, config: dict) -> Path:
    """`folder`/crm_roi.yaml holding `config`."""
    path = folder / "crm_roi.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def run_config(tmp_path: Path):
    """A factory: write `config` as tmp_path/crm_roi.yaml, run the models, return a connection (closed after)."""
    opened: list[duckdb.DuckDBPyConnection] = []

    def _run(config: dict) -> duckdb.DuckDBPyConnection:
        con = run_pipeline(load_settings(write_config(tmp_path, config)))
        opened.append(con)
        return con

    yield _run
    for con in opened:
        con.close()


@pytest.fixture
def project(tmp_path: Path, run_config):
    """A factory: write exports and a config into tmp_path, run the models, return a connection."""

    def build(
        deals: list[dict] | None = None,
        finance: list[dict] | None = None,
        files: dict[str, tuple[list[str], list[dict]]] | None = None,
        **settings: object,
    ) -> duckdb.DuckDBPyConnection:
        folder = tmp_path / "exports"
        write_csv(folder / "deals.csv", [*DEAL_COLUMNS, "is_deleted", "segment"], deals or [])
        for name, (columns, rows) in (files or {}).items():
            write_csv(folder / f"{name}.csv", columns, rows)
        write_csv(tmp_path / "finance_gl.csv", GL_COLUMNS, finance or [])
        return run_config({
            "as_of": "2025-03-31", "go_live": "2025-01-01", "baseline_months": 12,
            "sources": [{"kind": "files", "path": "exports", "profile": "canonical"}],
            "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS},
            **settings,
        })

    return build


def run_pipeline(settings: Settings, client_options: dict | None = None,
                 full_reload: bool = False) -> duckdb.DuckDBPyConnection:
    """Load files, sync API sources, stage and build every table; return a read-only connection.

    `client_options` tune the API connectors' HTTP client (e.g. short backoffs against a fake);
    `full_reload` syncs every API stream from its start, as `crm-roi run --full-reload` does.
    """
    with connect(settings.duckdb_path, settings) as con:
        for stream in CANONICAL_STREAMS:
            for spec in stream_inputs(settings, stream):
                load_stream(con, spec)
        for name, config in settings.api_sources():
            connector = config.open(client_options or FAST_CLIENT)
            try:
                for stream in API_STREAMS[config.kind]:
                    result = sync_stream(con, name, connector, stream, full=full_reload)
                    if result.error:
                        raise RuntimeError(f"{name}/{stream}: {result.error}")
            finally:
                connector.close()
        for table in STAGING_TABLES:
            build_staging(con, table)
        for table in MART_TABLES:
            build_mart(con, table)
    return open_with_raw(settings.duckdb_path, read_only=True)


def landed_ts(iso: str) -> dt.datetime:
    """What raw holds for an ISO 8601 timestamp (or date) a connector produced: a naive UTC timestamp."""
    moment = dt.datetime.fromisoformat(iso)
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


@pytest.fixture
def repo_root() -> Iterator[Path]:
    yield Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def demo_published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The analysts' copy of the demo, built once per test session by `crm-roi demo` (its report included)."""
    folder = tmp_path_factory.mktemp("demo_published")
    done = crm_roi("demo", "--db", "demo.duckdb", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / "demo.published.duckdb"


def write_tenant(root: Path, name: str, deals: list[dict], finance: list[dict], **settings: object) -> Path:
    """A tenant's folder under `root`: its exports, general ledger and crm_roi.yaml; returns the config."""
    folder = root / name
    write_csv(folder / "exports" / "deals.csv", DEAL_COLUMNS, deals)
    write_csv(folder / "finance_gl.csv", GL_COLUMNS, finance)
    config = {"as_of": "2025-06-30", "go_live": "2025-01-01", "baseline_months": 6,
              "sources": [{"kind": "files", "path": "exports", "profile": "canonical"}],
              "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS}, **settings}
    path = folder / "crm_roi.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def tenant_deals(prefix: str, count: int) -> list[dict]:
    """`count` deals with ids `<prefix>-<n>`: before and after go-live, won, lost and open."""
    months = ["2024-08-15", "2024-10-15", "2024-12-15", "2025-02-15", "2025-04-15", "2025-05-15"]
    rows = []
    for n in range(count):
        created = months[n % len(months)]
        closed = created[:8] + "28"
        won = None if n % 5 == 4 else n % 3 != 2
        rows.append(deal(f"{prefix}-{n}", created, "" if won is None else closed, won, amount=str(1000 + 100 * n)))
    return rows


def tenant_finance(prefix: str, scale: int = 1) -> list[dict]:
    """CRM software 1,200 and implementation 800 after go-live, sales cost 500 before it, all times `scale`."""
    return [gl(f"{prefix}-gl-1", "2025-01-10", "6100", str(1200 * scale)),
            gl(f"{prefix}-gl-2", "2025-02-10", "6110", str(800 * scale)),
            gl(f"{prefix}-gl-3", "2024-09-10", "6200", str(500 * scale))]
