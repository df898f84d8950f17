"""The hook point for alerting when the nightly run fails.

Dagster calls this sensor once per failed run of the code location. It logs
the failure as one structured line; to page someone, replace the body (or add
a second sensor) with a Slack, e-mail or PagerDuty call, e.g. with
dagster-slack's `make_slack_on_run_failure_sensor`. Turn it on in the UI
(Automation) or with `dagster sensor start nightly_failure_alert`.
"""

from __future__ import annotations

import json

import dagster as dg


@dg.run_failure_sensor(name="nightly_failure_alert", description="Logs every failed crm-roi run.")
def nightly_failure_alert(context: dg.RunFailureSensorContext) -> None:
    context.log.error(json.dumps({
        "event": "run_failed",
        "run_id": context.dagster_run.run_id,
        "job": context.dagster_run.job_name,
        "error": context.failure_event.message,
    }))
