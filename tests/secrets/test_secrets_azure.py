"""Azure Key Vault through the real SecretClient against a local HTTPS Key Vault endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from secrets_kv import TENANT, StaticCredential
from secrets_leak import assert_not_leaked
from secrets_support import HOSTILE_PASSWORD, settings_for

from job.errors import ConfigError
from job.secrets import get_params_factory
from job.secrets.azure import AzureKeyVaultSource

ENV_DB = {"MIGRATE_DATABASE_URL": "postgresql://envuser@db.internal:5432/app"}
SECRET = json.dumps({"username": "app", "password": HOSTILE_PASSWORD, "host": "pg.azure",
                     "dbname": "prod"})


def az_settings(vault: Any, name: str = "db", version: str | None = None) -> Any:
    extra = {"MIGRATE_AZURE_SECRET_VERSION": version} if version else {}
    return settings_for(MIGRATE_SECRET_SOURCE="azure", MIGRATE_AZURE_VAULT_URL=vault.url,
                        MIGRATE_AZURE_SECRET_NAME=name, **ENV_DB, **extra)


def source(vault: Any, ca_file: str, credential: Any, **kw: Any) -> AzureKeyVaultSource:
    # The fake vault is not a *.vault.azure.net host, so the challenge-resource check is off.
    return AzureKeyVaultSource(az_settings(vault, **kw), credential=credential,
                               client_kwargs={"connection_verify": ca_file,
                                              "verify_challenge_resource": False})


def test_200_after_the_401_challenge(keyvault: Any, ca_file: str) -> None:
    keyvault.set_secret("db", SECRET)
    cred = StaticCredential(keyvault)
    p = source(keyvault, ca_file, cred).fetch().params
    assert (p["user"], p["password"], p["host"], p["dbname"]) == (
        "app", HOSTILE_PASSWORD, "pg.azure", "prod")
    # The SDK asked for a token for the challenge's resource and tenant, then retried with it.
    assert cred.calls[0][0] == ("https://vault.azure.net/.default",)
    assert cred.calls[0][1].get("tenant_id") == TENANT
    auths = [a for (_, path, a) in keyvault.requests if path.startswith("/secrets/db")]
    assert auths == [None, "Bearer test-token"]


def test_pinned_version(keyvault: Any, ca_file: str) -> None:
    v1 = keyvault.set_secret("db", json.dumps({"username": "u", "password": "pw-first1"}))
    keyvault.set_secret("db", json.dumps({"username": "u", "password": "pw-second2"}))
    cred = StaticCredential(keyvault)
    assert source(keyvault, ca_file, cred).fetch().password == "pw-second2"
    assert source(keyvault, ca_file, cred, version=v1).fetch().password == "pw-first1"


def test_401_rejected_token_names_vault_and_secret(keyvault: Any, ca_file: str) -> None:
    keyvault.set_secret("db", SECRET)
    cred = StaticCredential(None, token="token-from-the-wrong-tenant")
    with pytest.raises(ConfigError) as err:
        source(keyvault, ca_file, cred).fetch()
    msg = str(err.value)
    assert "answered 401" in msg and f"vault '{keyvault.url}'" in msg and "secret 'db'" in msg
    assert err.value.exit_code == 2 and err.value.details["status"] == 401
    assert_not_leaked(HOSTILE_PASSWORD, msg)


def test_403_says_which_role_is_missing(keyvault: Any, ca_file: str) -> None:
    keyvault.set_secret("db", SECRET)
    keyvault.forbidden.add("db")
    with pytest.raises(ConfigError) as err:
        source(keyvault, ca_file, StaticCredential(keyvault)).fetch()
    msg = str(err.value)
    assert "answered 403 Forbidden" in msg and "Key Vault Secrets User" in msg
    assert "secret 'db'" in msg and keyvault.url in msg
    assert err.value.details["error_code"] == "Forbidden"
    assert_not_leaked(HOSTILE_PASSWORD, msg)


def test_404_missing_secret(keyvault: Any, ca_file: str) -> None:
    with pytest.raises(ConfigError) as err:
        source(keyvault, ca_file, StaticCredential(keyvault), name="nope").fetch()
    msg = str(err.value)
    assert "answered 404 SecretNotFound" in msg and "secret 'nope'" in msg
    assert err.value.details == {"provider": "azure", "vault": keyvault.url,
                                 "secret_id": "nope", "error_code": "SecretNotFound",
                                 "status": 404}


def test_no_credential_available(keyvault: Any, ca_file: str) -> None:
    from azure.identity import CredentialUnavailableError

    class Nothing:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise CredentialUnavailableError("DefaultAzureCredential failed to retrieve a token")

    keyvault.set_secret("db", SECRET)
    with pytest.raises(ConfigError, match="no Azure credential could get a token") as err:
        source(keyvault, ca_file, Nothing()).fetch()
    assert "AZURE_FEDERATED_TOKEN_FILE" in str(err.value)


def test_untrusted_certificate_is_refused(keyvault: Any) -> None:
    keyvault.set_secret("db", SECRET)
    src = AzureKeyVaultSource(az_settings(keyvault), credential=StaticCredential(keyvault),
                              client_kwargs={"verify_challenge_resource": False,
                                             "retry_total": 0})
    with pytest.raises(ConfigError, match="cannot reach Key Vault"):
        src.fetch()


def test_malformed_secret_says_which_field(keyvault: Any, ca_file: str) -> None:
    keyvault.set_secret("db", json.dumps({"user": "u", "passwd": "pw-typo1"}))
    with pytest.raises(ConfigError, match="missing field 'password'") as err:
        source(keyvault, ca_file, StaticCredential(keyvault)).fetch()
    assert_not_leaked("pw-typo1", str(err.value))


@pytest.fixture
def workload_identity(keyvault: Any, ca_file: str, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> Path:
    """What AKS Workload Identity injects into a pod, with Entra ID played by the fake server."""
    for name in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME",
                 "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("projected.service-account.jwt")
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", keyvault.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    return token_file


def test_default_credential_uses_workload_identity_on_aks(workload_identity: Path) -> None:
    from azure.identity import WorkloadIdentityCredential

    from job.secrets.azure import default_credential

    cred = default_credential()
    names = [type(c).__name__ for c in cred.credentials]
    assert names.index("WorkloadIdentityCredential") < names.index("ManagedIdentityCredential")
    assert "AzureCliCredential" not in names  # developer tools are excluded in a deploy job
    cred.get_token("https://vault.azure.net/.default")
    assert isinstance(cred._successful_credential, WorkloadIdentityCredential)


def test_key_vault_with_workload_identity_end_to_end(keyvault: Any,
                                                     workload_identity: Path) -> None:
    # The production path: no injected credential, DefaultAzureCredential exchanges the
    # projected service-account token for an Entra token, which Key Vault accepts.
    keyvault.resource = f"https://0.1:{keyvault.port}"  # passes the SDK's vault-domain check
    keyvault.set_secret("db", SECRET)
    params = get_params_factory(az_settings(keyvault))(False)
    assert params.password == HOSTILE_PASSWORD
    exchange = keyvault.token_requests[0]
    assert exchange["client_assertion"] == "projected.service-account.jwt"
    assert exchange["client_id"] == "11111111-2222-3333-4444-555555555555"
    assert exchange["client_assertion_type"].endswith("jwt-bearer")


def test_rotation_refresh_reads_the_new_version(keyvault: Any, workload_identity: Path) -> None:
    keyvault.resource = f"https://0.1:{keyvault.port}"
    keyvault.set_secret("db", json.dumps({"username": "u", "password": "pw-one1"}))
    get_params = get_params_factory(az_settings(keyvault))
    assert get_params(False).password == "pw-one1"
    keyvault.set_secret("db", json.dumps({"username": "u", "password": "pw-two2"}))
    assert get_params(False).password == "pw-one1"
    assert get_params(True).password == "pw-two2"
