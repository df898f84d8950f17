"""Many companies from one code location: the tenants file, each tenant's settings and files.

A consultancy or platform runs crm-roi for many client companies. The tenants file
(`CRM_ROI_TENANTS`) names each tenant's own crm_roi.yaml; every asset is partitioned by
tenant, and a run of one tenant partition reads that tenant's config when it starts. Each
tenant's tables live in the DuckDB files its own config names, and the connection its steps
open cannot reach any other file (`confine`): no table holds two tenants' rows, and no query
of one tenant's run reads another tenant's file.

The code location reads only the tenants file, never a tenant's config, so one tenant's
broken config fails that tenant's runs and no one else's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.config import (
    ConfigError,
    Cron,
    FilesSource,
    Owners,
    Settings,
    load_settings,
    one_line_error,
    read_mapping,
)
from pipelines.warehouse import LOCK_WAIT_SECONDS, WarehouseLocked

TENANTS_VARIABLE = "CRM_ROI_TENANTS"
TENANT_PARTITIONS = dg.DynamicPartitionsDefinition(name="tenants")
# A partition key, a run tag value and part of file names: plain and short.
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
CONFIG_SUFFIXES = (".yaml", ".yml")


class _TenantsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule_cron: Cron = Field("0 2 * * *", description="Cron of the `nightly_schedule` running every tenant (UTC).")
    owners: Owners = Field(["team:data"], min_length=1, description="Owners of every Dagster asset.")
    tenants: dict[str, Path] = Field(description="Tenant name -> its crm_roi.yaml, relative to this file.")


@dataclass(frozen=True)
class Tenants:
    """The tenants file (or folder) as read: which config each tenant runs with."""

    source: Path  # the tenants file, or the folder of configs
    configs: dict[str, Path]  # tenant name -> its config file
    schedule_cron: str = "0 2 * * *"
    owners: tuple[str, ...] = ("team:data",)

    def settings(self, tenant: str) -> Settings:
        """The tenant's validated settings, read now (CRM_ROI_DUCKDB does not apply to tenants)."""
        if tenant not in self.configs:
            raise ConfigError(f"{self.source}: no tenant '{tenant}' (tenants: {', '.join(self.configs) or 'none'})")
        return load_settings(self.configs[tenant], duckdb_override=False)


def _check_name(name: str, where: Path) -> str:
    if not TENANT_NAME.fullmatch(name):
        raise ConfigError(f"{where}: tenant name '{name}' must be lower-case letters, digits, _ or - "
                          "(at most 63, starting with a letter or digit)")
    return name


def read_tenants(path: str | Path) -> Tenants:
    """The tenants of a tenants file (`tenants: {name: config}`) or of a folder (`<name>.yaml` each)."""
    source = Path(path)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix in CONFIG_SUFFIXES and p.is_file())
        return Tenants(source, {_check_name(p.stem, p): p for p in files})
    if not source.is_file():
        raise ConfigError(f"tenants file '{source}' not found (set {TENANTS_VARIABLE} to a tenants file or folder)")
    try:
        parsed = _TenantsFile.model_validate(read_mapping(source))
    except ValidationError as exc:
        raise ConfigError(one_line_error(exc, source)) from None
    base = source.resolve().parent
    configs = {_check_name(name, source): base / config for name, config in parsed.tenants.items()}
    return Tenants(source, configs, parsed.schedule_cron, tuple(parsed.owners))


def tenants_from_env() -> Tenants | None:
    """The tenants `CRM_ROI_TENANTS` names, or None: one config, as without tenants."""
    path = os.environ.get(TENANTS_VARIABLE)
    return read_tenants(path) if path else None


def _readable(settings: Settings) -> tuple[list[str], list[str]]:
    """(files, folders) a tenant's step reads through DuckDB: its exports and its general ledger."""
    folders = [s.path for s in settings.sources if isinstance(s, FilesSource)]
    # Both spellings: the configured path and the one with '..' and symlinks resolved.
    return ([str(p) for p in (settings.finance.path, settings.finance.path.resolve())],
            [f"{p}{os.sep}" for folder in folders for p in dict.fromkeys((folder, folder.resolve()))])


def confine(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Let `con` (the tenant's working file with its raw file attached) read nothing but the tenant's exports.

    After this, DuckDB refuses to attach, read, copy or write any other file, and no statement
    can turn access back on (DuckDB refuses to re-enable it or to widen the allowed paths).
    """
    files, folders = _readable(settings)
    con.execute("SET allowed_paths = $paths", {"paths": files})
    con.execute("SET allowed_directories = $folders", {"folders": folders})
    con.execute("SET enable_external_access = false")


def claim(con: duckdb.DuckDBPyConnection, tenant: str, settings: Settings) -> None:
    """Record the tenant in its working file, and refuse a file another tenant's runs wrote.

    Two configs naming the same duckdb_path would put two tenants' rows in one table; the
    second tenant's first step fails instead, naming the file and its owner.
    """
    con.execute("CREATE TABLE IF NOT EXISTS bookkeeping.tenant AS SELECT $tenant AS tenant", {"tenant": tenant})
    owner = con.execute("SELECT tenant FROM bookkeeping.tenant").fetchone()[0]
    if owner != tenant:
        raise ConfigError(f"tenant {tenant}: duckdb_path {settings.duckdb_path} holds tenant {owner}'s tables: "
                          "give each tenant its own duckdb_path")


@contextmanager
def run_lock(tenant: str, settings: Settings) -> Iterator[None]:
    """Hold the tenant's files for a whole run: a second run of the same tenant waits, then fails with one line.

    The run queue keeps one run per tenant (deploy/dagster.yaml); this also covers runs that do
    not pass through it (`crm-roi run --tenant`, a run launched without the daemon).
    """
    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(settings.duckdb_path.with_suffix(".run.lock"), timeout=LOCK_WAIT_SECONDS)
    try:
        lock.acquire()
    except Timeout:
        raise WarehouseLocked(f"tenant {tenant}: another run holds {settings.duckdb_path} for longer than "
                              f"{LOCK_WAIT_SECONDS:g} s (CRM_ROI_LOCK_WAIT_SECONDS): one run per tenant at a "
                              "time") from None
    try:
        yield
    finally:
        lock.release()
