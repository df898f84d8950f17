"""The child process of the HubSpot kill test: sync a config's API sources into its DuckDB file.

Run as `python -m tests.hubspot_sync_child <config.yaml>`; the test SIGKILLs it
while the fake HubSpot stalls on a later page, then checks what was committed.
"""

from __future__ import annotations

import sys

from connectors.contract import API_STREAMS
from pipelines.api_sync import sync_stream
from pipelines.config import load_settings
from pipelines.warehouse import connect
from tests.conftest import FAST_CLIENT


def main(config: str) -> None:
    settings = load_settings(config)
    with connect(settings.duckdb_path, settings) as con:
        for name, source in settings.api_sources():
            connector = source.open(FAST_CLIENT)
            try:
                for stream in API_STREAMS[source.kind]:
                    print(stream, sync_stream(con, name, connector, stream), flush=True)
            finally:
                connector.close()


if __name__ == "__main__":
    main(sys.argv[1])
