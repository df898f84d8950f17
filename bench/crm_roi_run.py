"""Variants (c) and (d): `crm-roi run`, with the run's Dagster times recorded.

This is the `crm-roi` console script (`pipelines.cli:main`) run in this process
with the same arguments, so what is timed is exactly `crm-roi run --config FILE`.
The one addition: two Dagster entry points the CLI calls are wrapped with a
timer, `DagsterInstance.ephemeral` (the throwaway instance a run without
DAGSTER_HOME gets) and `JobDefinition.execute_in_process` (whose result keeps
the run's events). Dagster's overhead is then computed from the run itself:
instance creation plus the job's wall time minus the sum of its steps'
durations (STEP_SUCCESS duration, Dagster's own step timer). That is the time
spent around the steps: the instance, run start and end, the plan, step launch
and finish, the event log. Work Dagster does inside a step (materialization
and check events) is inside the step timer; `bench.dagster_noop` measures that
too, by running a job of the same shape whose steps do nothing.

    python -m bench.crm_roi_run [--detail FILE] run --config crm_roi.yaml
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

STARTED = time.perf_counter()

import dagster as dg  # noqa: E402  (imported after STARTED: its import time is part of the overhead report)

DAGSTER_IMPORT_S = time.perf_counter() - STARTED


def dagster_times(result: dg.ExecuteInProcessResult, job_wall_s: float, instance_s: float) -> dict:
    """Instance and job wall time, each step's duration and the remainder: Dagster's overhead around the steps."""
    steps = {event.step_key: event.event_specific_data.duration_ms / 1000 for event in result.all_events
             if event.event_type_value == "STEP_SUCCESS"}
    step_sum = sum(steps.values())
    return {"instance_s": round(instance_s, 3), "job_wall_s": round(job_wall_s, 3), "step_sum_s": round(step_sum, 3),
            "overhead_s": round(instance_s + job_wall_s - step_sum, 3),
            "steps": {k: round(v, 3) for k, v in steps.items()}, "dagster_import_s": round(DAGSTER_IMPORT_S, 3)}


def record_dagster_times(into: dict) -> None:
    """Wrap instance creation and execute_in_process so the run leaves its times in `into`."""
    ephemeral, execute = dg.DagsterInstance.ephemeral, dg.JobDefinition.execute_in_process
    instance_s: list[float] = []

    @functools.wraps(ephemeral)
    def timed_ephemeral(*args: object, **kwargs: object) -> dg.DagsterInstance:
        started = time.perf_counter()
        instance = ephemeral(*args, **kwargs)
        instance_s.append(time.perf_counter() - started)
        return instance

    @functools.wraps(execute)
    def timed_execute(self: dg.JobDefinition, *args: object, **kwargs: object) -> dg.ExecuteInProcessResult:
        started = time.perf_counter()
        result = execute(self, *args, **kwargs)
        into.update(dagster_times(result, time.perf_counter() - started, sum(instance_s)))
        return result

    dg.DagsterInstance.ephemeral = staticmethod(timed_ephemeral)  # type: ignore[method-assign]
    dg.JobDefinition.execute_in_process = timed_execute  # type: ignore[method-assign]


def run_cli(cli_args: list[str]) -> int:
    """`crm-roi <cli_args>` in this process; returns its exit status."""
    from pipelines.cli import main as crm_roi

    sys.argv = ["crm-roi", *cli_args]
    try:
        crm_roi()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


def main() -> None:
    from bench.measure import write_detail

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detail", help="write the instance and job times, step durations and overhead here (JSON)")
    parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="the crm-roi arguments, e.g. run --config FILE")
    args = parser.parse_args()
    times: dict = {}
    record_dagster_times(times)
    status = run_cli(args.cli_args)
    if status == 0:
        write_detail(args.detail, {"dagster": times, "process_to_exit_s": round(time.perf_counter() - STARTED, 3)})
    sys.exit(status)


if __name__ == "__main__":
    main()
