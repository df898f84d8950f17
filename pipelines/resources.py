"""The one Dagster resource: where the config file is, and a connection to the warehouse."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from pipelines.config import Settings, config_path, load_settings
from pipelines.warehouse import connect


class CrmRoi(dg.ConfigurableResource):
    """Reads `crm_roi.yaml` when a step starts, so each run sees the file as it is then."""

    config_file: str = str(config_path())

    def settings(self) -> Settings:
        return load_settings(self.config_file)

    @contextmanager
    def warehouse(self) -> Iterator[tuple[Settings, duckdb.DuckDBPyConnection]]:
        """The validated settings and a write connection with the run's variables set."""
        settings = self.settings()
        with connect(settings.duckdb_path, settings) as con:
            yield settings, con
