"""Variants (c) and (d): `crm-roi run`, with the run's Dagster step times recorded (and optionally profiled).

This is the `crm-roi` console script (`pipelines.cli:main`) run in this process
with the same arguments, so what is timed is exactly `crm-roi run --config FILE`.
The one addition: `dagster.JobDefinition.execute_in_process` is wrapped to time
the job and keep its result, so Dagster's overhead can be computed from the
run's own events: the job's wall time minus the sum of its steps' durations
(STEP_SUCCESS duration, Dagster's own step timer). What is left is time spent
between and around the steps: run start and end, the plan, step launch and
finish, the event log. Work Dagster does inside a step (materialization and
check events) is inside the step timer; `bench.dagster_noop` measures that
too, by running a job of the same shape whose steps do nothing.

    python -m bench.crm_roi_run [--detail FILE] [--profile-dir DIR] run --config crm_roi.yaml
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()

import dagster as dg  # noqa: E402  (imported after STARTED: its import time is part of the overhead report)

DAGSTER_IMPORT_S = time.perf_counter() - STARTED


def dagster_times(result: dg.ExecuteInProcessResult, job_wall_s: float) -> dict:
    """Job wall time, each step's duration and the remainder (Dagster's overhead outside the steps)."""
    steps = {event.step_key: event.event_specific_data.duration_ms / 1000 for event in result.all_events
             if event.event_type_value == "STEP_SUCCESS"}
    step_sum = sum(steps.values())
    return {"job_wall_s": round(job_wall_s, 3), "step_sum_s": round(step_sum, 3),
            "overhead_s": round(job_wall_s - step_sum, 3), "steps": {k: round(v, 3) for k, v in steps.items()},
            "dagster_import_s": round(DAGSTER_IMPORT_S, 3)}


def record_job_times(into: dict) -> None:
    """Wrap execute_in_process so each job it runs leaves its times in `into`."""
    original = dg.JobDefinition.execute_in_process

    @functools.wraps(original)
    def timed(self: dg.JobDefinition, *args: object, **kwargs: object) -> dg.ExecuteInProcessResult:
        started = time.perf_counter()
        result = original(self, *args, **kwargs)
        into.update(dagster_times(result, time.perf_counter() - started))
        return result

    dg.JobDefinition.execute_in_process = timed  # type: ignore[method-assign]


def run_cli(cli_args: list[str]) -> int:
    """`crm-roi <cli_args>` in this process; returns its exit status."""
    from pipelines.cli import main as crm_roi

    sys.argv = ["crm-roi", *cli_args]
    try:
        crm_roi()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


def profiled(cli_args: list[str], folder: Path, name: str) -> int:
    """Run under pyinstrument and write `name`.html (interactive) and `name`.txt (call tree) into `folder`."""
    from pyinstrument import Profiler

    folder.mkdir(parents=True, exist_ok=True)
    profiler = Profiler(interval=0.005)
    profiler.start()
    try:
        status = run_cli(cli_args)
    finally:
        profiler.stop()
        (folder / f"{name}.html").write_text(profiler.output_html(), encoding="utf-8")
        (folder / f"{name}.txt").write_text(profiler.output_text(unicode=True, show_all=False), encoding="utf-8")
    return status


def main() -> None:
    from bench.measure import write_detail

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detail", help="write the job's wall time, step durations and overhead here (JSON)")
    parser.add_argument("--profile-dir", type=Path, help="profile with pyinstrument, reports into this folder")
    parser.add_argument("--profile-name", default="crm_roi_run", help="file name (no suffix) of the reports")
    parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="the crm-roi arguments, e.g. run --config FILE")
    args = parser.parse_args()
    times: dict = {}
    record_job_times(times)
    if args.profile_dir:
        status = profiled(args.cli_args, args.profile_dir, args.profile_name)
    else:
        status = run_cli(args.cli_args)
    if status == 0:
        write_detail(args.detail, {"dagster": times, "process_to_exit_s": round(time.perf_counter() - STARTED, 3)})
    sys.exit(status)


if __name__ == "__main__":
    main()
