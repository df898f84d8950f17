# The crm-roi image: the user-code deployment of Dagster's Helm chart and the pod of every run it
# launches (deploy/values.yaml). Built from the lock, as `make setup` is: the runtime packages and
# the `deploy` extra (dagster-postgres, dagster-k8s), nothing from dev.
#   docker build -t crm-roi:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
# The locked dependencies first, in a layer of their own: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --extra deploy --no-install-project --python /usr/local/bin/python
# Then crm-roi itself, installed as a wheel (the SQL models and the demo data travel inside it).
COPY pipelines ./pipelines
COPY connectors ./connectors
COPY sql ./sql
COPY data/sample ./data/sample
RUN uv sync --frozen --extra deploy --no-editable --python /usr/local/bin/python

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 crm_roi
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
# The tenants' configs, exports and DuckDB files live on a volume mounted here (deploy/values.yaml).
WORKDIR /data
USER 10001
EXPOSE 3030
# The chart starts `dagster api grpc` with the arguments in deploy/values.yaml; this is the same server.
CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "3030", "--module-name", "pipelines.definitions"]
