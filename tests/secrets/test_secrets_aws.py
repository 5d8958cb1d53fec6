"""AWS Secrets Manager through a real boto3 client against moto (in-process and server mode)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from secrets_leak import assert_not_leaked
from secrets_support import HOSTILE_PASSWORD, settings_for

from job.errors import ConfigError
from job.secrets import get_params_factory, source_for
from job.secrets.aws import AwsSecretsManagerSource

ENV_DB = {"MIGRATE_DATABASE_URL": "postgresql://envuser@db.internal:6432/app?sslmode=require"}


@pytest.fixture
def sm(aws_env: dict[str, str]) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-west-1")


def aws_settings(secret_id: str, key: str | None = None, **env: str) -> Any:
    extra = {"MIGRATE_AWS_SECRET_KEY": key} if key else {}
    return settings_for(MIGRATE_SECRET_SOURCE="aws", MIGRATE_AWS_SECRET_ID=secret_id,
                        **ENV_DB, **extra, **env)


def test_url_secret(sm: Any) -> None:
    sm.create_secret(Name="prod/db-url",
                     SecretString="postgresql://app:p%40ss%2Fw%23rd%25%20%3F%3A%C3%A9@rds.host:5432/prod")
    p = source_for(aws_settings("prod/db-url")).fetch().params
    assert (p["user"], p["password"], p["host"], p["port"], p["dbname"]) == (
        "app", HOSTILE_PASSWORD, "rds.host", "5432", "prod")
    assert p["sslmode"] == "require"  # from the environment's URL


def test_rds_json_secret_by_arn(sm: Any) -> None:
    arn = sm.create_secret(Name="rds!db-123", SecretString=json.dumps({
        "username": "app", "password": HOSTILE_PASSWORD, "engine": "postgres",
        "host": "prod.abc.eu-west-1.rds.amazonaws.com", "port": 5432, "dbname": "prod",
        "dbInstanceIdentifier": "prod"}))["ARN"]
    p = source_for(aws_settings(arn)).fetch().params
    assert p["host"] == "prod.abc.eu-west-1.rds.amazonaws.com" and p["port"] == "5432"
    assert p["password"] == HOSTILE_PASSWORD and p["dbname"] == "prod"


def test_username_password_only_secret_takes_host_from_environment(sm: Any) -> None:
    sm.create_secret(Name="rds-managed",
                     SecretString=json.dumps({"username": "master", "password": HOSTILE_PASSWORD}))
    p = source_for(aws_settings("rds-managed")).fetch().params
    assert p == {"user": "master", "password": HOSTILE_PASSWORD, "host": "db.internal",
                 "port": "6432", "dbname": "app", "sslmode": "require"}


def test_username_password_only_secret_with_libpq_variables(sm: Any) -> None:
    from job.settings import load

    sm.create_secret(Name="rds-managed",
                     SecretString=json.dumps({"username": "master", "password": HOSTILE_PASSWORD}))
    settings = load({"MIGRATE_SECRET_SOURCE": "aws", "MIGRATE_AWS_SECRET_ID": "rds-managed",
                     "PGHOST": "pg.example", "PGDATABASE": "shop", "PGPORT": "5433"})
    p = source_for(settings).fetch().params
    assert (p["host"], p["port"], p["dbname"], p["user"]) == ("pg.example", "5433", "shop",
                                                              "master")


def test_single_json_key(sm: Any) -> None:
    sm.create_secret(Name="app-config", SecretString=json.dumps(
        {"API_KEY": "unrelated", "DB_PASSWORD": HOSTILE_PASSWORD}))
    p = source_for(aws_settings("app-config", key="DB_PASSWORD")).fetch().params
    assert p["password"] == HOSTILE_PASSWORD and p["user"] == "envuser"
    with pytest.raises(ConfigError, match=r"no key 'DB_URL' \(keys: API_KEY, DB_PASSWORD\)"):
        source_for(aws_settings("app-config", key="DB_URL")).fetch()


def test_binary_secret(sm: Any) -> None:
    sm.create_secret(Name="bin", SecretBinary=json.dumps(
        {"username": "u", "password": HOSTILE_PASSWORD}).encode())
    assert source_for(aws_settings("bin")).fetch().password == HOSTILE_PASSWORD


def test_missing_secret_names_provider_id_and_aws_code(sm: Any) -> None:
    with pytest.raises(ConfigError) as err:
        source_for(aws_settings("prod/nope")).fetch()
    msg = str(err.value)
    assert err.value.exit_code == 2
    assert "aws secret 'prod/nope'" in msg and "ResourceNotFoundException" in msg
    assert err.value.details["error_code"] == "ResourceNotFoundException"


def test_secret_scheduled_for_deletion(sm: Any) -> None:
    sm.create_secret(Name="old", SecretString=json.dumps({"username": "u", "password": "pw-old1"}))
    sm.delete_secret(SecretId="old", RecoveryWindowInDays=7)
    with pytest.raises(ConfigError, match="InvalidRequestException") as err:
        source_for(aws_settings("old")).fetch()
    assert_not_leaked("pw-old1", str(err.value))


def test_malformed_secret_says_which_field(sm: Any) -> None:
    sm.create_secret(Name="half", SecretString=json.dumps({"username": "u", "pass": "pw-typo1"}))
    with pytest.raises(ConfigError, match="aws secret 'half': missing field 'password'") as err:
        source_for(aws_settings("half")).fetch()
    assert_not_leaked("pw-typo1", str(err.value))


def test_access_denied_names_the_code_and_the_permission(aws_env: dict[str, str]) -> None:
    # moto's IAM enforcement answers Secrets Manager with a query-protocol XML error (code "403")
    # and ignores resource ARNs, so it cannot produce AWS's real AccessDeniedException; this one
    # case uses botocore's Stubber on a real client, with the error AWS returns.
    import boto3
    from botocore.stub import Stubber

    from job.secrets.aws import client_config

    client = boto3.client("secretsmanager", region_name="eu-west-1", config=client_config())
    stub = Stubber(client)
    stub.add_client_error(
        "get_secret_value", service_error_code="AccessDeniedException", http_status_code=400,
        service_message="User: arn:aws:sts::123456789012:assumed-role/migrate/task is not "
                        "authorized to perform: secretsmanager:GetSecretValue on resource: prod/db",
        expected_params={"SecretId": "prod/db", "VersionStage": "AWSCURRENT"})
    with stub, pytest.raises(ConfigError) as err:
        AwsSecretsManagerSource(aws_settings("prod/db"), client=client).fetch()
    msg = str(err.value)
    assert "aws secret 'prod/db'" in msg and "AccessDeniedException" in msg
    assert "secretsmanager:GetSecretValue" in msg
    assert err.value.details == {"provider": "aws", "secret_id": "prod/db",
                                 "error_code": "AccessDeniedException"}


def test_no_credentials_is_a_config_error(aws_env: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="no AWS credentials found") as err:
        source_for(aws_settings("prod/db")).fetch()
    assert err.value.exit_code == 2


def test_unreachable_endpoint_fails_fast_with_config_error(aws_env: dict[str, str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(ConfigError, match="cannot reach Secrets Manager: EndpointConnectionError"):
        source_for(aws_settings("prod/db")).fetch()
    assert time.monotonic() - start < 30


def test_region_comes_from_the_arn(sm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    other = boto3.client("secretsmanager", region_name="us-east-2")
    arn = other.create_secret(Name="far", SecretString=json.dumps(
        {"username": "u", "password": "pw-far1"}))["ARN"]
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert source_for(aws_settings(arn)).fetch().password == "pw-far1"


def test_rotation_refresh_fetches_the_new_value(sm: Any) -> None:
    sm.create_secret(Name="rot", SecretString=json.dumps({"username": "u", "password": "pw-one1"}))
    get_params = get_params_factory(aws_settings("rot"))
    assert get_params(False).password == "pw-one1"
    sm.put_secret_value(SecretId="rot", SecretString=json.dumps(
        {"username": "u", "password": "pw-two2"}))  # moves AWSCURRENT
    assert get_params(False).password == "pw-one1"  # later connections of the run: no API call
    assert get_params(True).password == "pw-two2"   # after an auth failure: fetched again
    assert get_params(False).password == "pw-two2"


# --- server mode: boto3 reaches a separate moto process through AWS_ENDPOINT_URL ---

def test_server_mode_url_and_json_secrets(moto_endpoint: str) -> None:
    import boto3

    sm = boto3.client("secretsmanager")
    assert sm.meta.endpoint_url == moto_endpoint
    sm.create_secret(Name="s/json", SecretString=json.dumps(
        {"username": "app", "password": HOSTILE_PASSWORD}))
    sm.create_secret(Name="s/url", SecretString="postgresql://a:b%23c@h:1/d")
    p = source_for(aws_settings("s/json")).fetch().params
    assert p["password"] == HOSTILE_PASSWORD and p["host"] == "db.internal"
    assert source_for(aws_settings("s/url")).fetch().password == "b#c"
    with pytest.raises(ConfigError, match="ResourceNotFoundException"):
        source_for(aws_settings("s/none")).fetch()
