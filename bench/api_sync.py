"""Variant (e), the client side: a full sync of HubSpot deals into a fresh DuckDB file, by crm-roi or by dlt.

`crm-roi`: the HubSpot connector (connectors.hubspot) driven by
pipelines.api_sync.sync_stream, the code the raw API asset runs, minus Dagster.
The connector is built directly rather than from a config file because the
config caps requests_per_10s at HubSpot's real 250; the benchmark lifts the
limits on both sides (see bench.fake_server).

`dlt`: dlt's declarative rest_api source paging the same endpoint with the
same query (limit 50, the same properties, stage history, company
associations, then the archived deals), cursor from `paging.next.after`, a
bearer token, into dlt's duckdb destination. What each lands differs in shape
(dlt unnests history and associations into child tables, crm-roi maps to its
canonical rows), not in what is fetched.

    BENCH_HUBSPOT_TOKEN=... python -m bench.api_sync {crm-roi,dlt} --base-url URL --db FILE [--work DIR] [--detail FILE]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import duckdb

from bench.measure import write_detail
from connectors.contract import API_STREAM_TABLES
from connectors.hubspot import settings

UNLIMITED = 10**9


def deal_query(archived: bool) -> dict[str, str | int]:
    """The query crm-roi's connector sends for a full list of deals (connectors.hubspot.helpers.list_pages)."""
    properties = dict.fromkeys([*settings.DEAL_FIXED_PROPERTIES, *settings.DEAL_COLUMNS.values()])
    return {"limit": settings.HISTORY_LIST_LIMIT, "archived": str(archived).lower(),
            "propertiesWithHistory": settings.STAGE, "associations": "companies", "properties": ",".join(properties)}


def sync_crm_roi(base_url: str, token: str, db: Path) -> dict:
    """Full sync of the deals stream with crm-roi's connector; return what landed and what it took."""
    from connectors.hubspot import HubSpotSource
    from pipelines.api_sync import sync_stream
    from pipelines.warehouse import connect

    connector = HubSpotSource(token, base_url=base_url, requests_per_10s=UNLIMITED)
    try:
        with connect(db) as con:
            result = sync_stream(con, "hubspot", connector, "deals", full=True)
            if result.error:
                raise SystemExit(f"sync stopped: {result.error}")
            deals, history = (con.execute(f"SELECT count(*) FROM raw.{table}").fetchone()[0]  # noqa: S608
                              for table in API_STREAM_TABLES["deals"])
    finally:
        connector.close()
    stats = connector.stats
    return {"rows": deals, "child_rows": {"deal_stage_history": history}, "pages": result.pages,
            "client_requests": stats.requests, "retries": stats.retries,
            "statuses": {str(k): v for k, v in stats.statuses.items()}}


def sync_dlt(base_url: str, token: str, db: Path, work: Path) -> dict:
    """Full sync of the same deals with dlt's rest_api source into dlt's duckdb destination."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    def deals(name: str, archived: bool) -> dict:
        return {"name": name, "table_name": "deals",
                "endpoint": {"path": settings.OBJECTS_PATH.format(object_type="deals"),
                             "params": deal_query(archived), "data_selector": "results"}}

    source = rest_api_source({
        "client": {"base_url": base_url, "auth": {"type": "bearer", "token": token},
                   "paginator": {"type": "cursor", "cursor_path": "paging.next.after", "cursor_param": "after"}},
        "resources": [deals("deals", archived=False), deals("deals_archived", archived=True)],
    })
    pipeline = dlt.pipeline(pipeline_name="bench_hubspot", pipelines_dir=str(work),
                            destination=dlt.destinations.duckdb(str(db)), dataset_name="hubspot")
    pipeline.run(source)
    with duckdb.connect(str(db), read_only=True) as con:
        tables = [name for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'hubspot' "
            "AND table_name LIKE 'deals%'").fetchall()]
        counts = {name: con.execute(f'SELECT count(*) FROM hubspot."{name}"').fetchone()[0]  # noqa: S608
                  for name in tables}
    return {"rows": counts.pop("deals"), "child_rows": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("client", choices=["crm-roi", "dlt"])
    parser.add_argument("--base-url", required=True, help="the fake HubSpot (bench.fake_server)")
    parser.add_argument("--db", type=Path, required=True, help="DuckDB file to create (must not exist)")
    parser.add_argument("--work", type=Path, help="dlt's pipelines folder (state, load packages)")
    parser.add_argument("--detail", help="write rows landed and request counts here (JSON)")
    args = parser.parse_args()
    token = os.environ["BENCH_HUBSPOT_TOKEN"]
    if args.client == "crm-roi":
        detail = sync_crm_roi(args.base_url, token, args.db)
    else:
        detail = sync_dlt(args.base_url, token, args.db, args.work or args.db.parent / "dlt")
    write_detail(args.detail, detail)


if __name__ == "__main__":
    main()
