# The Storywink worker: `python worker.py`, one process per container.
#   docker build -t storywink-worker:0.1.0 .
# docker-compose.temporal.yml builds it and runs it as the `storywink-worker` service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Sources only (see .dockerignore); `pip install .` installs the package, the `storywink`
# console scripts (`storywink`, `storywink-worker`) and the top-level worker.py module.
COPY pyproject.toml README.md ./
COPY storywink ./storywink
COPY workflows ./workflows
COPY activities ./activities
COPY worker.py ./
RUN pip install . \
    && useradd --create-home --uid 10001 --user-group storywink \
    && mkdir -p /app/.data \
    && chown storywink:storywink /app/.data

USER storywink

# HEALTH_PORT (/healthz, /readyz) and METRICS_PORT (/metrics) as the compose file sets them.
EXPOSE 8090 9464

# SIGTERM reaches python directly (exec form): the worker drains in-flight pages for
# SHUTDOWN_GRACE_SECONDS before it exits.
CMD ["python", "worker.py"]
