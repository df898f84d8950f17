"""Sensors: the hook point for alerting when the nightly run fails, and the tenants' partitions.

Dagster calls `nightly_failure_alert` once per failed run of the code location. It logs
the failure as one structured line; to page someone, replace the body (or add
a second sensor) with a Slack, e-mail or PagerDuty call, e.g. with
dagster-slack's `make_slack_on_run_failure_sensor`. Turn it on in the UI
(Automation) or with `dagster sensor start nightly_failure_alert`.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from pipelines.tenants import TENANT_PARTITIONS, read_tenants


@dg.run_failure_sensor(name="nightly_failure_alert", description="Logs every failed crm-roi run.")
def nightly_failure_alert(context: dg.RunFailureSensorContext) -> None:
    context.log.error(json.dumps({
        "event": "run_failed",
        "run_id": context.dagster_run.run_id,
        "job": context.dagster_run.job_name,
        "error": context.failure_event.message,
    }))


def tenants_sensor(source: Path) -> dg.SensorDefinition:
    """Keeps the `tenants` partitions equal to the tenants file (or folder) at `source`.

    It reads the file on every tick, so a tenant added there gets its partition, and its runs,
    within a minute, with no reload of the code location; a tenant removed loses its partition
    (its DuckDB files stay where they are). A tenants file that does not read fails the tick with
    its one-line error and changes nothing.
    """
    @dg.sensor(name="tenants_sensor", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Adds and removes `tenants` partitions to match {source}.")
    def sync_tenants(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        wanted = read_tenants(source).configs
        known = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS.name))
        added, removed = sorted(set(wanted) - known), sorted(known - set(wanted))
        requests = []
        if added:
            requests.append(TENANT_PARTITIONS.build_add_request(added))
        if removed:
            requests.append(TENANT_PARTITIONS.build_delete_request(removed))
        if requests:
            context.log.info(f"tenants added: {', '.join(added) or 'none'}; removed: {', '.join(removed) or 'none'}")
        return dg.SensorResult(dynamic_partitions_requests=requests)

    return sync_tenants
