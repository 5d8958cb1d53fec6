"""Every provider delivers ``p@ss/w#rd% ?:é`` to a real PostgreSQL role, in-process and through
the real CLI (``python -m job run``) in a subprocess; the password never shows in any output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from secrets_kv import TENANT
from secrets_leak import assert_not_leaked
from secrets_support import settings_for

from job import db
from job.log import get_logger
from job.secrets import get_params_factory

# --- one contract every provider passes -------------------------------------------------------


@pytest.fixture
def provider_env(request: pytest.FixtureRequest, role: Any, tmp_path: Path) -> Iterator[
        Callable[[str], dict[str, str]]]:
    """``provider_env(kind)`` -> environment that makes ``kind`` deliver the role's password."""
    def make(kind: str) -> dict[str, str]:
        secret_json = json.dumps({"username": role.user, "password": role.password,
                                  "engine": "postgres"})
        base = {"MIGRATE_DATABASE_URL": role.url_without_password}
        if kind == "env-url":
            return {"MIGRATE_DATABASE_URL": role.encoded_url()}
        if kind == "env-pg":
            return {"PGHOST": role.host, "PGPORT": role.port, "PGUSER": role.user,
                    "PGPASSWORD": role.password, "PGDATABASE": role.dbname}
        if kind == "file":
            f = tmp_path / "db-secret.json"
            f.write_text(secret_json)
            f.chmod(0o400)
            return {**base, "MIGRATE_SECRET_SOURCE": "file", "MIGRATE_SECRET_FILE": str(f)}
        if kind == "aws":
            import boto3

            endpoint = request.getfixturevalue("moto_endpoint")
            aws = request.getfixturevalue("aws_env")
            boto3.client("secretsmanager").create_secret(Name="prod/db", SecretString=secret_json)
            return {**base, **aws, "AWS_ENDPOINT_URL": endpoint,
                    "MIGRATE_SECRET_SOURCE": "aws", "MIGRATE_AWS_SECRET_ID": "prod/db"}
        if kind == "azure":
            vault = request.getfixturevalue("keyvault")
            ca_file = request.getfixturevalue("ca_file")
            vault.resource = f"https://0.1:{vault.port}"  # passes the SDK's vault-domain check
            vault.set_secret("db", secret_json)
            token = tmp_path / "sa-token"
            token.write_text("projected.jwt")
            return {**base, "MIGRATE_SECRET_SOURCE": "azure", "MIGRATE_AZURE_VAULT_URL": vault.url,
                    "MIGRATE_AZURE_SECRET_NAME": "db", "AZURE_CLIENT_ID": "cid",
                    "AZURE_TENANT_ID": TENANT, "AZURE_FEDERATED_TOKEN_FILE": str(token),
                    "AZURE_AUTHORITY_HOST": vault.url, "REQUESTS_CA_BUNDLE": ca_file}
        raise AssertionError(kind)

    yield make


PROVIDERS = ["env-url", "env-pg", "file", "aws", "azure"]


@pytest.mark.parametrize("kind", PROVIDERS)
def test_provider_delivers_hostile_password_and_connects(kind: str, role: Any,
                                                        provider_env: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    env = provider_env(kind)
    for k, v in env.items():
        if k.startswith(("AWS_", "AZURE_", "REQUESTS_")):
            monkeypatch.setenv(k, v)  # the SDKs read the process environment
    settings = settings_for(**{k: v for k, v in env.items()
                               if not k.startswith(("AWS_", "AZURE_"))})
    conn, params = db.wait_for_database(get_params_factory(settings), settings, get_logger())
    with conn:
        assert conn.execute("SELECT current_user").fetchone() == (role.user,)
    assert params.password == role.password


def test_rotation_between_fetch_and_connect_is_fetched_again(role: Any, pg_server: Any,
                                                              moto_endpoint: str) -> None:
    import boto3

    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="rot", SecretString=json.dumps(
        {"username": role.user, "password": role.password}))
    settings = settings_for(MIGRATE_SECRET_SOURCE="aws", MIGRATE_AWS_SECRET_ID="rot",
                            MIGRATE_DATABASE_URL=role.url_without_password, MIGRATE_DB_WAIT="5s")
    get_params = get_params_factory(settings)
    assert get_params(False).password == role.password  # fetched ...
    # ... then the rotation Lambda changes the role's password and AWSCURRENT
    role.set_password(pg_server.admin_url, "rotated/p@ss:2 é")
    sm.put_secret_value(SecretId="rot", SecretString=json.dumps(
        {"username": role.user, "password": "rotated/p@ss:2 é"}))
    events: list[str] = []

    class Log:
        def __getattr__(self, level: str) -> Any:
            return lambda event, **kw: events.append(event)

    conn, params = db.wait_for_database(get_params, settings, Log())
    with conn:
        assert conn.execute("SELECT current_user").fetchone() == (role.user,)
    assert params.password == "rotated/p@ss:2 é"
    assert events == ["db.auth_failed_refetching_secret", "db.connected"]


# --- the real CLI -----------------------------------------------------------------------------


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "0001_widgets.sql").write_text("CREATE TABLE widgets (id bigint PRIMARY KEY);\n")
    return d


@pytest.mark.parametrize("kind", PROVIDERS)
def test_cli_run_migrates_with_each_provider(kind: str, role: Any, provider_env: Any,
                                             migrations_dir: Path, tmp_path: Path,
                                             run_job: Any) -> None:
    import psycopg

    term = tmp_path / "termination-log"
    summary = tmp_path / "summary.md"
    env = {**provider_env(kind), "MIGRATE_MIGRATIONS_DIR": str(migrations_dir),
           "MIGRATE_TERMINATION_LOG": str(term), "GITHUB_STEP_SUMMARY": str(summary)}
    result = run_job("run", env=env)
    assert result.returncode == 0, result.stderr
    with psycopg.connect(host=role.host, port=role.port, user=role.user, password=role.password,
                         dbname=role.dbname) as conn:
        assert conn.execute("SELECT to_regclass('public.widgets') IS NOT NULL").fetchone() == (
            True,)
    assert_not_leaked(role.password, result.stdout, result.stderr, term.read_text(),
                      summary.read_text())
    assert role.user in term.read_text()  # the summary names the database, just not the secret


@pytest.mark.parametrize("command", [["run"], ["status"], ["plan"], ["backup"]])
def test_cli_failure_paths_never_print_the_password(command: list[str], role: Any,
                                                    pg_server: Any, migrations_dir: Path,
                                                    tmp_path: Path, run_job: Any) -> None:
    """Wrong password (exit 3), malformed secret (exit 2), bad migration (exit 8)."""
    term = tmp_path / "term"
    summary = tmp_path / "summary.md"
    common = {"MIGRATE_MIGRATIONS_DIR": str(migrations_dir), "MIGRATE_TERMINATION_LOG": str(term),
              "GITHUB_STEP_SUMMARY": str(summary), "MIGRATE_DB_WAIT": "2s",
              "MIGRATE_LOG_LEVEL": "debug", "MIGRATE_BACKUP": (tmp_path / "backups").as_uri(),
              "MIGRATE_PG_BIN_DIR": str(pg_server.bin_dir)}
    outputs: list[str] = []
    # 1. The database refuses the password in the secret (after the one re-fetch).
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"username": role.user, "password": role.password + "X"}))
    r = run_job(*command, env={**common, "MIGRATE_SECRET_SOURCE": "file",
                               "MIGRATE_SECRET_FILE": str(wrong),
                               "MIGRATE_DATABASE_URL": role.url_without_password})
    assert r.returncode == 3, r.stderr
    outputs += [r.stdout, r.stderr]
    # 2. A URL secret with the password but a malformed port.
    bad = tmp_path / "bad-url"
    bad.write_text(role.encoded_url().replace(f":{role.port}/", ":notaport/"))
    r = run_job(*command, env={**common, "MIGRATE_SECRET_SOURCE": "file",
                               "MIGRATE_SECRET_FILE": str(bad)})
    assert r.returncode in (2, 3), r.stderr
    outputs += [r.stdout, r.stderr]
    # 3. The URL in the environment with a password, server down (nothing listens).
    r = run_job(*command, env={**common, "MIGRATE_DATABASE_URL": role.encoded_url().replace(
        f":{role.port}/", ":1/")})
    assert r.returncode == 3, r.stderr
    outputs += [r.stdout, r.stderr]
    if command == ["run"]:
        # 4. A failing migration while connected with the password.
        (migrations_dir / "0002_broken.sql").write_text("SELECT no_such_function();\n")
        r = run_job("run", env={**common, "MIGRATE_DATABASE_URL": role.encoded_url()})
        assert r.returncode == 8, r.stderr
        outputs += [r.stdout, r.stderr]
    if command == ["backup"]:
        # 5. A successful pg_dump: the password reaches it through a passfile, not argv.
        r = run_job("backup", env={**common, "MIGRATE_DATABASE_URL": role.encoded_url()})
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]
    for f in (term, summary):
        if f.exists():
            outputs.append(f.read_text())
    assert_not_leaked(role.password, *outputs)
