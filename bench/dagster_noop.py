"""Dagster's own cost for the nightly job: the same asset graph, run the same way, with steps that do nothing.

Every asset of crm-roi's definitions (same keys, dependencies and asset checks)
is mirrored by one whose body only reports its materialization and passing
checks. Running that job in-process on an ephemeral instance, as `crm-roi run`
does (the instance's creation is timed too), leaves nothing but Dagster:
planning, step launch, events, check results.
Its wall time is the per-run overhead the "< 3 s" target is about; the
import of dagster and the building of the definitions are reported beside it.

    python -m bench.dagster_noop --config crm_roi.yaml [--detail FILE]
"""

from __future__ import annotations

import argparse
import time

STARTED = time.perf_counter()

import dagster as dg  # noqa: E402  (timed: the import is part of what Dagster costs a run)

DAGSTER_IMPORT_S = time.perf_counter() - STARTED


def mirror(assets_def: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """An asset with `assets_def`'s keys, deps and check specs whose body does no work."""
    specs, checks = list(assets_def.specs), list(assets_def.check_specs)

    @dg.multi_asset(specs=specs, check_specs=checks, name=assets_def.node_def.name)
    def noop() -> object:
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key, metadata={"dagster/row_count": 0})
        for check in checks:
            yield dg.AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)

    return noop


def run(config_file: str) -> dict:
    """Build crm-roi's definitions, mirror them, run the mirror job once; return the times."""
    started = time.perf_counter()
    from pipelines.definitions import build_defs  # timed: importing it loads every module of the job

    assets = [mirror(a) for a in build_defs(config_file).assets if isinstance(a, dg.AssetsDefinition)]
    job = dg.define_asset_job("nightly_noop", selection=dg.AssetSelection.all(), executor_def=dg.in_process_executor)
    resolved = dg.Definitions(assets=assets, jobs=[job]).resolve_job_def("nightly_noop")
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        result = resolved.execute_in_process(
            instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    job_wall = time.perf_counter() - started
    if not result.success:
        raise SystemExit("the no-op mirror job failed")
    return {"job_wall_s": round(job_wall, 3), "steps": len(assets), "defs_import_and_build_s": round(build_s, 3),
            "dagster_import_s": round(DAGSTER_IMPORT_S, 3)}


def main() -> None:
    from bench.measure import write_detail

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a crm_roi.yaml (its definitions are mirrored)")
    parser.add_argument("--detail", help="write the times here (JSON)")
    args = parser.parse_args()
    write_detail(args.detail, run(args.config))


if __name__ == "__main__":
    main()
