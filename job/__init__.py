"""migrate-job: deploy-time PostgreSQL migrations that are locked, atomic and verified."""

__version__ = "0.1.0"
