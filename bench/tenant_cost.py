"""What one tenant costs: `crm-roi run --tenant` at demo size and at N deals, measured.

For docs/scale.md: wall time, CPU time and peak RSS of the first (full) run and of a nightly
run after 1% of the deals changed, the disk each tenant's files take, and how many Dagster
events (rows of the event log, and their serialised bytes) one tenant's run adds to the
instance, the figure Postgres's event-log growth is worked out from.

    .venv/bin/python -m bench.tenant_cost --deals 100000 --work /tmp/tenant_cost
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import dagster as dg
import yaml
from dagster._serdes import serialize_value

from bench.generate import generate, write_delta
from bench.measure import measure
from pipelines.demo import DEMO_DATA

CRM_ROI = str(Path(sys.executable).parent / "crm-roi")


def _disk(folder: Path) -> dict[str, float]:
    """MiB of the tenant's DuckDB files and report, by kind."""
    def mib(paths: list[Path]) -> float:
        return round(sum(p.stat().st_size for p in paths if p.is_file()) / 2**20, 2)

    return {
        "working_mib": mib([folder / "crm_roi.duckdb"]),
        "raw_mib": mib([folder / "crm_roi.raw.duckdb"]),
        "published_mib": mib([folder / "crm_roi.published.duckdb"]),
        "report_mib": mib(list((folder / "crm_roi_report").glob("*"))),
        "exports_mib": mib([p for p in folder.glob("*.csv")]),
    }


def _events(home: Path, tenant: str) -> list[dict]:
    """Per run of the tenant, oldest first: the events it wrote to the instance and their bytes."""
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": tenant}))
        return [{"events": len(logs := instance.all_logs(r.dagster_run.run_id)),
                 "bytes": sum(len(serialize_value(e)) for e in logs)} for r in reversed(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tenant_cost"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    home = args.work / "dagster_home"
    home.mkdir(parents=True)
    shutil.copytree(DEMO_DATA, args.work / "demo")
    generate(args.work / "large", args.deals)
    (args.work / "tenants.yaml").write_text(yaml.safe_dump(
        {"tenants": {"demo": "demo/crm_roi.yaml", "large": "large/crm_roi.yaml"}}))
    env = {**os.environ, "DAGSTER_HOME": str(home), "CRM_ROI_TENANTS": str(args.work / "tenants.yaml"),
           "CRM_ROI_PROGRESS": "off"}
    results = {}
    for tenant in ("demo", "large"):
        run = [CRM_ROI, "run", "--tenant", tenant]
        first = measure(run, log=args.work / f"{tenant}.first.log", env=env)
        if tenant == "large":
            write_delta(args.work / "large", 0.01)
        nightly = measure(run, log=args.work / f"{tenant}.nightly.log", env=env)
        results[tenant] = {"first": first.as_dict(), "nightly": nightly.as_dict(),
                           "disk": _disk(args.work / tenant), "instance": _events(home, tenant)}
    print(json.dumps({"deals": args.deals, **results}, indent=2))


if __name__ == "__main__":
    main()
