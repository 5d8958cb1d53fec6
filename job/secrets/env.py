"""``MIGRATE_SECRET_SOURCE=env``: the URL or libpq ``PG*`` variables are the credentials."""

from __future__ import annotations

from typing import TYPE_CHECKING

from job.db import ConnParams, base_params
from job.errors import ConfigError
from job.secrets import value

if TYPE_CHECKING:
    from job.settings import Settings


class EnvSource:
    name = "env"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self) -> str:
        return "environment"

    def fetch(self) -> ConnParams:
        if not self.settings.has_database:
            raise ConfigError(
                "no database configured: set MIGRATE_DATABASE_URL (or DATABASE_URL, or libpq "
                "PGHOST/PGDATABASE/...), or choose MIGRATE_SECRET_SOURCE=file|aws|azure"
            )
        params = base_params(self.settings)
        value.register(params.password)
        return params
