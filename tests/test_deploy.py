"""The deployment files, checked offline: the Dockerfile by hadolint, the Helm values against a
schema of the keys they use, the run launcher's settings by dagster-k8s and the Kubernetes client,
the run pod's resources against the benchmark, and the same queue rules in both instance files.

There is no Docker engine and no Helm chart here (the chart is fetched from Dagster's Helm
repository when installing), so the image is not built and the chart not rendered: the values'
keys are checked against `ChartValues` below, a schema written for this project from the chart's
documented values at 1.13.27, covering only the keys deploy/values.yaml sets.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import kubernetes
import yaml
from dagster._config import process_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
from pydantic import BaseModel, ConfigDict, Field

from pipelines.definitions import NIGHTLY_TAG
from pipelines.resources import PARTITION_TAG

REPO = Path(__file__).resolve().parent.parent
VALUES = yaml.safe_load((REPO / "deploy" / "values.yaml").read_text())
INSTANCE = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())


class _Keys(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Keys):
    requests: dict[Literal["cpu", "memory"], str]
    limits: dict[Literal["cpu", "memory"], str]


class Image(_Keys):
    repository: str
    tag: str
    pullPolicy: Literal["Always", "IfNotPresent", "Never"]


class UserDeployment(_Keys):
    name: str
    image: Image
    dagsterApiGrpcArgs: list[str]
    port: int
    env: list[dict[Literal["name", "value"], str]]
    envSecrets: list[dict[Literal["name"], str]]
    volumes: list[dict[str, Any]]
    volumeMounts: list[dict[str, Any]]
    resources: Resources
    includeConfigInLaunchedRuns: dict[Literal["enabled"], bool]


class UserDeployments(_Keys):
    enabled: bool
    deployments: list[UserDeployment] = Field(min_length=1)


class PostgreSQL(_Keys):
    enabled: bool
    postgresqlHost: str
    postgresqlUsername: str
    postgresqlDatabase: str
    postgresqlScheme: str
    service: dict[Literal["port"], int]


class K8sRunLauncherKeys(_Keys):
    resources: Resources
    runK8sConfig: dict[Literal["containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig",
                               "jobMetadata"], dict[str, Any]]


class RunLauncher(_Keys):
    type: Literal["K8sRunLauncher"]
    config: dict[Literal["k8sRunLauncher"], K8sRunLauncherKeys]


class TagLimit(_Keys):
    key: str
    value: str | dict[Literal["applyLimitPerUniqueValue"], bool]
    limit: int


class Runs(_Keys):
    maxConcurrentRuns: int
    tagConcurrencyLimits: list[TagLimit]


class Pools(_Keys):
    defaultLimit: int
    granularity: Literal["op", "run"]


class Concurrency(_Keys):
    enabled: bool
    runs: Runs
    pools: Pools


class Daemon(_Keys):
    enabled: bool
    runMonitoring: dict[Literal["enabled", "pollIntervalSeconds"], bool | int]


class ChartValues(_Keys):
    global_: dict[Literal["postgresqlSecretName"], str] = Field(alias="global")
    postgresql: PostgreSQL
    generatePostgresqlPasswordSecret: bool
    dagster_user_deployments: UserDeployments = Field(alias="dagster-user-deployments")
    runLauncher: RunLauncher
    dagsterDaemon: Daemon
    concurrency: Concurrency
    telemetry: dict[Literal["enabled"], bool]


def _mib(quantity: str) -> float:
    return float(kubernetes.utils.parse_quantity(quantity)) / 2**20


def test_the_dockerfile_passes_hadolint_and_installs_from_the_lock():
    done = subprocess.run([str(Path(sys.executable).parent / "hadolint"), "--no-color", "Dockerfile"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout, done.stdout
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "uv sync --frozen --extra deploy --no-editable" in dockerfile
    # The uv that builds the image is the one `make setup` installs.
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"uv==([\d.]+)", dockerfile).group(1) == re.search(r"uv==([\d.]+)", makefile).group(1)
    # Everything the wheel is built from is copied in, and let through .dockerignore.
    pyproject = (REPO / "pyproject.toml").read_text()
    needed = {"pyproject.toml", "uv.lock", "README.md", "pipelines", "connectors", "sql", "data/sample"}
    assert {f'"{path}"' for path in ("sql", "data/sample")} <= set(re.findall(r'"[\w/]+"', pyproject))
    copied = {part for line in dockerfile.splitlines() if line.startswith("COPY ") and "--from" not in line
              for part in line.split()[1:-1]}
    assert {p.removeprefix("./") for p in copied} == needed
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert allowed == needed


def test_the_helm_values_use_only_the_charts_keys():
    values = ChartValues.model_validate(VALUES)
    [deployment] = values.dagster_user_deployments.deployments
    assert deployment.dagsterApiGrpcArgs == ["--module-name", "pipelines.definitions"]
    assert {"name": "CRM_ROI_TENANTS", "value": "/data/tenants.yaml"} in deployment.env
    assert [m["mountPath"] for m in deployment.volumeMounts] == ["/data"]
    # The Postgres password is never in the values: the chart reads it from the named Secret.
    assert "postgresqlPassword" not in VALUES["postgresql"] and not values.generatePostgresqlPasswordSecret


def test_the_run_launcher_settings_are_valid_for_dagster_k8s_and_kubernetes():
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    # As the chart writes them into the instance's run_launcher config.
    config = {"instance_config_map": "crm-roi-dagster-instance", "dagster_home": "/opt/dagster/dagster_home",
              "postgres_password_secret": VALUES["global"]["postgresqlSecretName"],
              "resources": launcher["resources"],
              "run_k8s_config": {re.sub(r"([A-Z])", r"_\1", key).lower(): value
                                 for key, value in launcher["runK8sConfig"].items()}}
    result = process_config(K8sRunLauncher.config_type(), config)
    assert result.success, [error.message for error in result.errors]
    # The Kubernetes client's own models take the job spec and the resources, as dagster-k8s reads them
    # (unknown keys refused).
    def model(kind: type, values: dict) -> Any:
        return k8s_model_from_dict(kind, k8s_snake_case_dict(kind, values))

    job_spec = model(kubernetes.client.V1JobSpec, {**launcher["runK8sConfig"]["jobSpecConfig"], "template": {}})
    assert (job_spec.backoff_limit, job_spec.ttl_seconds_after_finished) == (0, 86400)
    resources = model(kubernetes.client.V1ResourceRequirements, launcher["resources"])
    assert _mib(resources.requests["memory"]) <= _mib(resources.limits["memory"])


def test_the_run_pod_requests_cover_the_benchmarks_peak_memory():
    """The request holds a full run's peak RSS at every benchmarked size, with a fifth to spare."""
    results = json.loads((REPO / "bench" / "results.json").read_text())
    peak = max(run["rss_mb"] for size in results["sizes"].values()
               for variant, runs in size["runs"].items() if variant.startswith("crm_roi") for run in runs)
    assert 780 < peak < 900  # 802 MiB at 10M deals (bench/RESULTS.md)
    requests = VALUES["runLauncher"]["config"]["k8sRunLauncher"]["resources"]["requests"]
    assert _mib(requests["memory"]) >= 1.2 * peak
    code_server = VALUES["dagster-user-deployments"]["deployments"][0]["resources"]["requests"]
    assert _mib(code_server["memory"]) < _mib(requests["memory"])


def test_the_helm_values_and_the_instance_file_queue_runs_by_the_same_rules():
    def rules(limits: list[dict]) -> list[tuple[str, str]]:
        return [(limit["key"], json.dumps(limit.get("value"), sort_keys=True)) for limit in limits]

    chart = VALUES["concurrency"]["runs"]["tagConcurrencyLimits"]
    instance = INSTANCE["concurrency"]["runs"]["tag_concurrency_limits"]
    assert rules(chart) == rules(instance)
    assert [r[0] for r in rules(chart)] == [PARTITION_TAG, NIGHTLY_TAG]
    # One run per tenant, everywhere.
    assert [limit["limit"] for limit in chart if limit["key"] == PARTITION_TAG] == [1]
    assert [limit["limit"] for limit in instance if limit["key"] == PARTITION_TAG] == [1]
