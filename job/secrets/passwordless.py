"""``MIGRATE_AUTH=rds-iam|azure-ad``: a short-lived token as the password, TLS forced.

Each is a wrapper over the source that gives host, port, user and database (usually ``env``):
every ``fetch`` makes a fresh token, so a connection opened late in a long run, or the retry
after an authentication failure, never presents an expired one. The token is registered for
redaction like any password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from job import redact
from job.db import ConnParams
from job.errors import ConfigError
from job.log import get_logger
from job.secrets import value

if TYPE_CHECKING:
    from job.secrets import SecretSource
    from job.settings import Settings

AZURE_PG_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
_TLS_MODES = ("require", "verify-ca", "verify-full")


def force_tls(params: ConnParams, auth: str) -> ConnParams:
    """``sslmode`` at least ``require``; a stricter ``verify-ca``/``verify-full`` is kept."""
    mode = params.params.get("sslmode")
    if mode in _TLS_MODES:
        return params
    if mode:
        get_logger().warning("secrets.tls_forced", auth=auth, configured_sslmode=mode,
                             sslmode="require")
    return params.merged(sslmode="require")


def _host_port_user(params: ConnParams, auth: str) -> tuple[str, int, str]:
    p = params.params
    host = (p.get("host") or "").split(",")[0]
    if not host or host.startswith("/"):
        raise ConfigError(f"MIGRATE_AUTH={auth} needs a TCP host name (the token is bound to it)")
    port = int((p.get("port") or "5432").split(",")[0])
    user = p.get("user") or ""
    if not user:
        raise ConfigError(f"MIGRATE_AUTH={auth} needs the database user name")
    return host, port, user


def rds_region_of(host: str) -> str | None:
    # <name>.<id>.<region>.rds.amazonaws.com (and .rds.amazonaws.com.cn)
    labels = host.lower().split(".")
    if "rds" in labels:
        i = labels.index("rds")
        if i >= 1 and labels[i + 1:i + 2] == ["amazonaws"]:
            return labels[i - 1]
    return None


class RdsIamAuth:
    name = "rds-iam"

    def __init__(self, inner: SecretSource, settings: Settings, *, session: Any = None) -> None:
        self.inner = inner
        self.settings = settings
        self._session = session

    def describe(self) -> str:
        return f"RDS IAM token over {self.inner.describe()}"

    def region_for(self, host: str) -> str:
        # The host name of an RDS endpoint says where it lives; a custom DNS name does not.
        region = rds_region_of(host) or self.session().region_name
        if not region:
            raise ConfigError(
                "MIGRATE_AUTH=rds-iam: no AWS region (set AWS_REGION, or connect to the "
                "*.<region>.rds.amazonaws.com endpoint name)"
            )
        return str(region)

    def session(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session()
        return self._session

    def fetch(self) -> ConnParams:
        from botocore.exceptions import BotoCoreError

        params = self.inner.fetch()
        host, port, user = _host_port_user(params, self.name)
        region = self.region_for(host)
        try:
            client = self.session().client("rds", region_name=region)
            token = client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user,
                                                  Region=region)
        except BotoCoreError as exc:
            raise ConfigError(
                f"MIGRATE_AUTH=rds-iam: cannot sign an RDS auth token: {type(exc).__name__}: "
                f"{redact.scrub(str(exc))} (the role needs AWS credentials and rds-db:connect)",
                provider="rds-iam", error_code=type(exc).__name__,
            ) from None
        value.register(token)
        return force_tls(params.merged(password=token), self.name)


class AzureAdAuth:
    name = "azure-ad"

    def __init__(self, inner: SecretSource, settings: Settings, *, credential: Any = None) -> None:
        self.inner = inner
        self.settings = settings
        self._credential = credential

    def describe(self) -> str:
        return f"Entra ID token over {self.inner.describe()}"

    def fetch(self) -> ConnParams:
        from azure.core.exceptions import AzureError

        params = self.inner.fetch()
        _host_port_user(params, self.name)
        if self._credential is None:
            from job.secrets.azure import default_credential

            # Kept for the run: azure-identity caches the token and renews it before expiry.
            self._credential = default_credential()
        try:
            token = self._credential.get_token(AZURE_PG_SCOPE).token
        except AzureError as exc:
            first = redact.scrub(str(getattr(exc, "message", None) or exc)).strip().splitlines()
            raise ConfigError(
                "MIGRATE_AUTH=azure-ad: no Entra ID token for Azure Database for PostgreSQL "
                f"({AZURE_PG_SCOPE}): {first[0] if first else type(exc).__name__}",
                provider="azure-ad", error_code=type(exc).__name__,
            ) from None
        value.register(token)
        return force_tls(params.merged(password=token), self.name)
