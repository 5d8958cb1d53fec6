"""Where the database credentials come from: one small provider per source behind one Protocol.

Rules for a provider: fetch just before connecting (secrets rotate) and fetch again when asked —
no provider caches a value; register every secret value with ``job.redact.add`` before
returning it; return *complete* parameters (the secret merged over the environment's, refusing
silent libpq defaults); raise ``ConfigError`` naming the provider and the secret id (never the
value) when the secret is missing, denied or malformed. Cloud SDKs are imported inside the
provider, so a run with ``env`` never loads boto3 or azure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from job.db import ConnParams
from job.errors import ConfigError
from job.secrets.env import EnvSource

if TYPE_CHECKING:
    from job.settings import Settings

__all__ = ["ConnParams", "EnvSource", "SecretSource", "get_params_factory", "source_for"]


class SecretSource(Protocol):
    name: str

    def describe(self) -> str:
        """Where the secret lives, for messages (never the value)."""
        ...

    def fetch(self) -> ConnParams:
        """Return complete connection parameters (secret merged over the environment's)."""
        ...


def base_source(settings: Settings) -> SecretSource:
    """The provider named by ``MIGRATE_SECRET_SOURCE``, without passwordless auth."""
    kind = settings.secret_source
    if kind == "env":
        return EnvSource(settings)
    if kind == "file":
        from job.secrets.file import FileSource

        return FileSource(settings)
    if kind == "aws":
        from job.secrets.aws import AwsSecretsManagerSource

        return AwsSecretsManagerSource(settings)
    if kind == "azure":
        from job.secrets.azure import AzureKeyVaultSource

        return AzureKeyVaultSource(settings)
    raise ConfigError(f"MIGRATE_SECRET_SOURCE={kind!r} must be env, file, aws or azure")


def with_auth(source: SecretSource, settings: Settings) -> SecretSource:
    """Wrap ``source`` in the passwordless method ``MIGRATE_AUTH`` asks for, if any."""
    from job.secrets.passwordless import AzureAdAuth, RdsIamAuth

    if settings.auth == "rds-iam":
        return RdsIamAuth(source, settings)
    if settings.auth == "azure-ad":
        return AzureAdAuth(source, settings)
    return source


def source_for(settings: Settings) -> SecretSource:
    """The complete provider: the secret source, under passwordless auth when configured."""
    return with_auth(base_source(settings), settings)


class _Cached:
    """Keeps the base secret for the run's later connections until a refresh is asked for."""

    def __init__(self, inner: SecretSource) -> None:
        self.inner = inner
        self.name = inner.name
        self._params: ConnParams | None = None

    def describe(self) -> str:
        return self.inner.describe()

    def invalidate(self) -> None:
        self._params = None

    def fetch(self) -> ConnParams:
        if self._params is None:
            self._params = self.inner.fetch()
        return self._params


def get_params_factory(settings: Settings) -> Callable[[bool], ConnParams]:
    """``get_params(refresh)`` for ``job.db.wait_for_database`` and every later connection.

    The secret is fetched on the first call and again whenever ``refresh`` is true (after an
    authentication failure: the secret may have rotated). Passwordless tokens are made fresh
    on every call, so a connection opened late in a long run never presents an expired one.
    """
    cached = _Cached(base_source(settings))
    chain = with_auth(cached, settings)

    def get_params(refresh: bool = False) -> ConnParams:
        if refresh:
            cached.invalidate()
        return chain.fetch()

    return get_params
