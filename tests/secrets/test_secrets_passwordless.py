"""MIGRATE_AUTH=rds-iam and azure-ad: a fresh token as the password, TLS forced."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from secrets_kv import TENANT, StaticCredential
from secrets_support import settings_for
from structlog.testing import capture_logs

from job import redact
from job.errors import ConfigError
from job.secrets import get_params_factory
from job.secrets.passwordless import AZURE_PG_SCOPE, AzureAdAuth, rds_region_of

RDS_HOST = "prod.c9akciq32.eu-central-1.rds.amazonaws.com"


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    import botocore.auth

    clock = {"now": datetime.datetime(2026, 3, 1, 12, 0, 0)}
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: clock["now"])
    return clock


def iam_settings(url: str, **env: str) -> Any:
    return settings_for(MIGRATE_AUTH="rds-iam", MIGRATE_DATABASE_URL=url, **env)


def test_rds_iam_token_is_what_boto3_generates(aws_env: dict[str, str], frozen_clock: Any) -> None:
    import boto3

    params = get_params_factory(iam_settings(f"postgresql://iam_user@{RDS_HOST}:5432/app"))(False)
    expected = boto3.client("rds", region_name="eu-central-1").generate_db_auth_token(
        DBHostname=RDS_HOST, Port=5432, DBUsername="iam_user", Region="eu-central-1")
    assert params.password == expected
    query = parse_qs(urlsplit("https://" + expected).query)
    assert query["Action"] == ["connect"] and query["DBUser"] == ["iam_user"]
    assert "/eu-central-1/rds-db/aws4_request" in query["X-Amz-Credential"][0]
    assert params.params["sslmode"] == "require"
    assert redact.scrub(f"pw={params.password}") == "pw=***"


def test_rds_iam_region_from_environment_for_custom_dns(aws_env: dict[str, str],
                                                        frozen_clock: Any) -> None:
    import boto3

    params = get_params_factory(iam_settings("postgresql://u@db.corp.example:6432/app"))(False)
    expected = boto3.client("rds", region_name="eu-west-1").generate_db_auth_token(
        DBHostname="db.corp.example", Port=6432, DBUsername="u", Region="eu-west-1")
    assert params.password == expected


def test_rds_iam_new_token_per_call(aws_env: dict[str, str], frozen_clock: Any) -> None:
    get_params = get_params_factory(iam_settings(f"postgresql://u@{RDS_HOST}/app"))
    first = get_params(False).password
    frozen_clock["now"] += datetime.timedelta(minutes=20)  # a token lives 15 minutes
    assert get_params(False).password != first


@pytest.mark.parametrize(("configured", "expected"), [
    (None, "require"), ("disable", "require"), ("prefer", "require"), ("allow", "require"),
    ("require", "require"), ("verify-ca", "verify-ca"), ("verify-full", "verify-full"),
])
def test_rds_iam_forces_tls(aws_env: dict[str, str], configured: str | None,
                            expected: str) -> None:
    query = f"?sslmode={configured}" if configured else ""
    with capture_logs() as logs:
        params = get_params_factory(iam_settings(f"postgresql://u@{RDS_HOST}/app{query}"))(False)
    assert params.params["sslmode"] == expected
    forced = [e for e in logs if e["event"] == "secrets.tls_forced"]
    assert len(forced) == (1 if configured in ("disable", "prefer", "allow") else 0)


def test_rds_iam_with_username_only_secret(aws_env: dict[str, str]) -> None:
    import json

    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name="iam", SecretString=json.dumps({"username": "iam_user", "host": RDS_HOST,
                                                 "dbname": "app"}))
        params = get_params_factory(settings_for(
            MIGRATE_AUTH="rds-iam", MIGRATE_SECRET_SOURCE="aws", MIGRATE_AWS_SECRET_ID="iam"))(
            False)
    assert params.params["user"] == "iam_user"
    assert params.password and f"{RDS_HOST}:5432/?Action=connect" in params.password


def test_rds_iam_refuses_unix_socket(aws_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="needs a TCP host"):
        get_params_factory(settings_for(MIGRATE_AUTH="rds-iam", PGHOST="/run/postgresql",
                                        PGUSER="u", PGDATABASE="d"))(False)


def test_rds_iam_without_region(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigError, match="no AWS region"):
        get_params_factory(iam_settings("postgresql://u@db.corp.example/app"))(False)


def test_rds_region_of_endpoint_names() -> None:
    assert rds_region_of(RDS_HOST) == "eu-central-1"
    assert rds_region_of("x.cluster-ro-abc.us-east-2.rds.amazonaws.com") == "us-east-2"
    assert rds_region_of("db.corp.example") is None


def test_entra_token_with_test_credential_forces_tls() -> None:
    from job.secrets.env import EnvSource

    settings = settings_for(MIGRATE_AUTH="azure-ad", MIGRATE_DATABASE_URL=(
        "postgresql://migrator%40corp.example@pg.postgres.database.azure.com/app?sslmode=prefer"))
    cred = StaticCredential(None, token="eyJ0eXAiOiJKV1Qi.entra.token")
    params = AzureAdAuth(EnvSource(settings), settings, credential=cred).fetch()
    assert params.password == "eyJ0eXAiOiJKV1Qi.entra.token"
    assert params.params["sslmode"] == "require"
    assert params.params["user"] == "migrator@corp.example"
    assert cred.calls == [((AZURE_PG_SCOPE,), {})]
    assert redact.scrub(params.password) == "***"


def test_entra_token_through_workload_identity(keyvault: Any, ca_file: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sa.jwt")
    for k, v in {"AZURE_CLIENT_ID": "cid-1", "AZURE_TENANT_ID": TENANT,
                 "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
                 "AZURE_AUTHORITY_HOST": keyvault.url, "REQUESTS_CA_BUNDLE": ca_file}.items():
        monkeypatch.setenv(k, v)
    get_params = get_params_factory(settings_for(
        MIGRATE_AUTH="azure-ad",
        MIGRATE_DATABASE_URL="postgresql://mi-user@pg.postgres.database.azure.com/app"
                             "?sslmode=verify-full"))
    params = get_params(False)
    assert params.password in keyvault.valid_tokens
    assert params.params["sslmode"] == "verify-full"
    assert keyvault.token_requests[0]["scope"] == AZURE_PG_SCOPE
    assert keyvault.token_requests[0]["client_assertion"] == "sa.jwt"


def test_entra_without_credential_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.identity import CredentialUnavailableError

    from job.secrets.env import EnvSource

    class Nothing:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise CredentialUnavailableError("no identity here")

    settings = settings_for(MIGRATE_AUTH="azure-ad",
                            MIGRATE_DATABASE_URL="postgresql://u@pg.example/app")
    with pytest.raises(ConfigError, match="no Entra ID token.*no identity here") as err:
        AzureAdAuth(EnvSource(settings), settings, credential=Nothing()).fetch()
    assert err.value.exit_code == 2
