"""``MIGRATE_SECRET_SOURCE=azure``: Azure Key Vault with azure-identity's DefaultAzureCredential.

On AKS, Workload Identity injects ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID`` and
``AZURE_FEDERATED_TOKEN_FILE`` and DefaultAzureCredential uses them; elsewhere it falls through
to managed identity. The azure packages are imported here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from job import redact
from job.db import ConnParams, base_params
from job.errors import ConfigError
from job.log import get_logger
from job.secrets import value

if TYPE_CHECKING:
    from job.settings import Settings

_STATUS_HINTS = {
    401: "Key Vault rejected the identity's token (wrong tenant, or the token is for another "
         "resource)",
    403: "the identity may not read this secret: assign it the 'Key Vault Secrets User' role on "
         "the vault (RBAC) or a 'Get' secret access policy, and check the vault's network rules",
    404: "no such secret (or version) in this vault",
}


def default_credential() -> Any:
    from azure.identity import DefaultAzureCredential

    # Interactive and developer-tool credentials make no sense in a deploy job and slow the
    # chain down when nothing is configured.
    return DefaultAzureCredential(
        exclude_interactive_browser_credential=True,
        exclude_visual_studio_code_credential=True,
        exclude_powershell_credential=True,
        exclude_developer_cli_credential=True,
        exclude_cli_credential=True,
    )


class AzureKeyVaultSource:
    name = "azure"

    def __init__(self, settings: Settings, *, credential: Any = None,
                 client_kwargs: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.vault_url = settings.azure_vault_url or ""
        self.secret_name = settings.azure_secret_name or ""
        self.version = settings.azure_secret_version
        self._credential = credential
        self._client_kwargs = dict(client_kwargs or {})
        self._client: Any = None

    def describe(self) -> str:
        version = f" version {self.version!r}" if self.version else ""
        return f"azure secret {self.secret_name!r}{version} in vault {self.vault_url!r}"

    def client(self) -> Any:
        if self._client is None:
            from azure.keyvault.secrets import SecretClient

            if self._credential is None:
                self._credential = default_credential()
            kwargs: dict[str, Any] = {"retry_total": 3, "connection_timeout": 5,
                                      "read_timeout": 10}
            kwargs.update(self._client_kwargs)
            self._client = SecretClient(self.vault_url, self._credential, **kwargs)
        return self._client

    def fetch(self) -> ConnParams:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

        where = self.describe()
        if not (self.vault_url and self.secret_name):
            raise ConfigError("MIGRATE_SECRET_SOURCE=azure needs MIGRATE_AZURE_VAULT_URL and "
                              "MIGRATE_AZURE_SECRET_NAME")
        if not self.vault_url.startswith("https://"):
            raise ConfigError(f"MIGRATE_AZURE_VAULT_URL={self.vault_url!r} must start with https://")
        details = {"provider": "azure", "vault": self.vault_url, "secret_id": self.secret_name}
        try:
            secret = self.client().get_secret(self.secret_name, self.version)
        except ClientAuthenticationError as exc:
            status = exc.status_code
            if status is None:
                # No HTTP response: the credential itself could not get a token.
                first = redact.scrub(str(exc.message or exc)).strip().splitlines()
                raise ConfigError(
                    f"{where}: no Azure credential could get a token (Workload Identity needs "
                    "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE; or a "
                    f"managed identity): {first[0] if first else type(exc).__name__}",
                    error_code="CredentialUnavailable", **details,
                ) from None
            raise self._http_error(where, exc, details) from None
        except HttpResponseError as exc:
            raise self._http_error(where, exc, details) from None
        except AzureError as exc:
            raise ConfigError(
                f"{where}: cannot reach Key Vault: {type(exc).__name__}: "
                f"{redact.scrub(str(exc.message or exc))}",
                error_code=type(exc).__name__, **details,
            ) from None
        text = secret.value or ""
        value.register(text)
        params = value.parse(text, base_params(self.settings), where,
                             require_password=self.settings.auth == "password")
        get_logger().info("secrets.fetched", source="azure", vault=self.vault_url,
                          secret_id=self.secret_name,
                          version_id=getattr(secret.properties, "version", None),
                          database=params.display())
        return params

    def _http_error(self, where: str, exc: Any, details: dict[str, Any]) -> ConfigError:
        status = exc.status_code
        code = getattr(getattr(exc, "error", None), "code", None) or exc.reason or "HttpError"
        hint = _STATUS_HINTS.get(status, "")
        return ConfigError(
            f"{where}: Key Vault answered {status} {code}" + (f" ({hint})" if hint else ""),
            error_code=code, status=status, **details,
        )
