"""Where the database credentials come from: one small provider per source behind one Protocol.

Rules for a provider: fetch just before connecting (secrets rotate); register every secret value
with ``job.redact.add`` before returning it; raise ``ConfigError`` naming the provider and the
secret id (never the value) when the secret is missing, denied or malformed. Cloud SDKs are
imported inside the provider, so a run with ``env`` never loads boto3 or azure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from job import redact
from job.db import ConnParams, base_params
from job.errors import ConfigError

if TYPE_CHECKING:
    from job.settings import Settings


class SecretSource(Protocol):
    name: str

    def fetch(self) -> ConnParams:
        """Return complete connection parameters (secret merged over the environment's)."""
        ...


class EnvSource:
    name = "env"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def fetch(self) -> ConnParams:
        if not self.settings.has_database:
            raise ConfigError(
                "no database configured: set MIGRATE_DATABASE_URL (or DATABASE_URL, or libpq "
                "PGHOST/PGDATABASE/...), or choose MIGRATE_SECRET_SOURCE=file|aws|azure"
            )
        params = base_params(self.settings)
        redact.add(params.password)
        return params


def source_for(settings: Settings) -> SecretSource:
    if settings.secret_source == "env":
        return EnvSource(settings)
    raise ConfigError(
        f"MIGRATE_SECRET_SOURCE={settings.secret_source} is not available yet in this build"
    )
