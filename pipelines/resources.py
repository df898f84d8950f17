"""The one Dagster resource: the run's validated settings and its warehouse connections."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from pipelines.config import ConfigError, Settings
from pipelines.tenants import Tenants, claim, confine, run_lock
from pipelines.warehouse import connect

# The tag Dagster gives a run of one partition: with tenants, the run's tenant.
PARTITION_TAG = "dagster/partition"


class CrmRoi:
    """Settings bound once, when the code location is loaded, for the asset graph and every step alike.

    A run process loads the code location at its start, so a run sees the config file as
    it was then, and no step can see a source the graph was not built from. A tenant's run
    binds its tenant's settings once, when the run starts (`tenant_resource`).
    """

    def __init__(self, settings: Settings, tenant: str | None = None) -> None:
        self.settings = settings
        self.tenant = tenant

    @contextmanager
    def warehouse(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection with the run's variables set; a tenant's reaches only the tenant's own files."""
        with connect(self.settings.duckdb_path, self.settings) as con:
            if self.tenant is not None:
                claim(con, self.tenant, self.settings)
                confine(con, self.settings)
            yield con


def tenant_resource(tenants: Tenants) -> dg.ResourceDefinition:
    """`crm_roi` for a run of one tenant partition: that tenant's settings, read once as the run starts.

    The run holds the tenant's run lock throughout, so two runs of one tenant never write its
    files at once, however they were launched.
    """
    @dg.resource(description="The run's tenant: its settings, read from its config when the run starts.")
    def crm_roi(context: dg.InitResourceContext) -> Iterator[CrmRoi]:
        tenant = context.run.tags.get(PARTITION_TAG) if context.run else None
        if tenant is None:
            raise ConfigError("a run with tenants is for one tenant: launch it for one partition of `tenants`")
        settings = tenants.settings(tenant)
        with run_lock(tenant, settings):
            yield CrmRoi(settings, tenant)

    return crm_roi
