"""The production stack (deploy/, docker-compose.temporal.yml): compose, Prometheus, versions."""
