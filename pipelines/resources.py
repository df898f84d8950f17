"""The one Dagster resource: the run's validated settings and its warehouse connections."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from pipelines.config import Settings
from pipelines.warehouse import connect


class CrmRoi:
    """Settings bound once, when the code location is loaded, for the asset graph and every step alike.

    A run process loads the code location at its start, so a run sees the config file as
    it was then, and no step can see a source the graph was not built from.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @contextmanager
    def warehouse(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection with the run's variables set."""
        with connect(self.settings.duckdb_path, self.settings) as con:
            yield con
