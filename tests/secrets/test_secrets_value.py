"""Secret value formats: a PostgreSQL URL or the RDS JSON shape, merged over the environment."""

from __future__ import annotations

import json

import pytest
from secrets_leak import assert_not_leaked
from secrets_support import HOSTILE_PASSWORD

from job import redact
from job.db import ConnParams
from job.errors import ConfigError
from job.secrets import value

BASE = ConnParams({"host": "db.internal", "port": "6432", "dbname": "app", "user": "envuser",
                   "sslmode": "verify-full"})


def test_rds_json_with_hostile_password_becomes_a_keyword_untouched() -> None:
    text = json.dumps({"username": "app", "password": HOSTILE_PASSWORD, "engine": "postgres",
                       "host": "x.eu-west-1.rds.amazonaws.com", "port": 5432, "dbname": "prod"})
    p = value.parse(text, BASE, "test secret").params
    assert p["password"] == HOSTILE_PASSWORD
    assert (p["user"], p["host"], p["port"], p["dbname"]) == (
        "app", "x.eu-west-1.rds.amazonaws.com", "5432", "prod")
    assert p["sslmode"] == "verify-full"  # what the secret does not say comes from the environment
    assert_not_leaked(HOSTILE_PASSWORD, redact.scrub(f"error: {text} {p}"))


def test_username_password_only_secret_takes_host_port_db_from_environment() -> None:
    text = json.dumps({"username": "master", "password": HOSTILE_PASSWORD})
    p = value.parse(text, BASE, "test secret").params
    assert p == {"host": "db.internal", "port": "6432", "dbname": "app", "user": "master",
                 "password": HOSTILE_PASSWORD, "sslmode": "verify-full"}


def test_database_key_is_an_alias_of_dbname() -> None:
    text = json.dumps({"username": "u", "password": "pw1", "database": "other"})
    assert value.parse(text, BASE, "s").params["dbname"] == "other"


def test_percent_encoded_url_secret_decodes_the_password() -> None:
    url = "postgresql://u:p%40ss%2Fw%23rd%25%20%3F%3A%C3%A9@h:5433/d?sslmode=require"
    p = value.parse(url, ConnParams(), "s").params
    assert p["password"] == HOSTILE_PASSWORD
    assert (p["host"], p["port"], p["dbname"], p["sslmode"]) == ("h", "5433", "d", "require")


def test_single_json_key_holding_a_password_or_a_url() -> None:
    text = json.dumps({"DB_PASSWORD": HOSTILE_PASSWORD, "DB_URL": "postgresql://a:b%3Ac@h/d"})
    assert value.parse(text, BASE, "s", json_key="DB_PASSWORD").params == {
        **BASE.params, "password": HOSTILE_PASSWORD}
    p = value.parse(text, BASE, "s", json_key="DB_URL").params
    assert (p["user"], p["password"], p["host"], p["dbname"]) == ("a", "b:c", "h", "d")


@pytest.mark.parametrize(("text", "message"), [
    ("", "secret is empty"),
    ("hunter2-not-json", "neither a postgresql:// URL nor JSON"),
    ("[1, 2]", "not an object"),
    (json.dumps({"password": "pw-abc"}), None),  # user comes from BASE: fine
    (json.dumps({"username": "u"}), "missing field 'password'"),
    (json.dumps({"username": "u", "password": "pw-abc", "engine": "mysql"}), "not PostgreSQL"),
    (json.dumps({"username": "u", "password": "pw-abc", "port": "x"}), "'port' is not a number"),
    (json.dumps({"username": "u", "password": "pw-abc", "port": 70000}), "out of range"),
    (json.dumps({"username": 5, "password": "pw-abc"}), "'username' must be a string"),
])
def test_malformed_secret_names_the_problem_and_never_the_value(text: str,
                                                                message: str | None) -> None:
    if message is None:
        assert value.parse(text, BASE, "aws secret 'prod/db'").params["user"] == "envuser"
        return
    with pytest.raises(ConfigError) as err:
        value.parse(text, BASE, "aws secret 'prod/db'")
    assert message in str(err.value)
    assert str(err.value).startswith("aws secret 'prod/db': ")
    for secret in ("hunter2-not-json", "pw-abc"):
        assert_not_leaked(secret, str(err.value))


def test_missing_host_or_dbname_is_refused_instead_of_libpq_defaults() -> None:
    only_pw = json.dumps({"username": "u", "password": "pw-abc"})
    with pytest.raises(ConfigError, match="no host"):
        value.parse(only_pw, ConnParams({"dbname": "d"}), "s")
    with pytest.raises(ConfigError, match="no database name"):
        value.parse(only_pw, ConnParams({"host": "h"}), "s")
    with pytest.raises(ConfigError, match="missing field 'username'"):
        value.parse(json.dumps({"password": "pw-abc"}), ConnParams({"host": "h", "dbname": "d"}),
                    "s")


def test_missing_json_key_lists_the_keys_not_the_values() -> None:
    text = json.dumps({"user": "u", "password": "pw-secret-1"})
    with pytest.raises(ConfigError, match=r"no key 'DB_URL' \(keys: password, user\)") as err:
        value.parse(text, BASE, "s", json_key="DB_URL")
    assert_not_leaked("pw-secret-1", str(err.value))


def test_unparsable_url_does_not_echo_the_url() -> None:
    bad = "postgresql://u:unencoded%zzpw@h/d"  # an invalid percent escape
    with pytest.raises(ConfigError, match="cannot be parsed") as err:
        value.parse(bad, BASE, "s")
    assert "unencoded" not in str(err.value)


def test_password_is_optional_for_passwordless_auth() -> None:
    p = value.parse(json.dumps({"username": "iam_user"}), BASE, "s", require_password=False)
    assert "password" not in p.params and p.params["user"] == "iam_user"


def test_secret_host_replaces_environment_hostaddr() -> None:
    base = ConnParams({"hostaddr": "10.0.0.1", "dbname": "d"})
    p = value.parse(json.dumps({"username": "u", "password": "pw-x", "host": "h"}), base, "s")
    assert "hostaddr" not in p.params and p.params["host"] == "h"


def test_env_source_loads_no_cloud_sdk() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, job.secrets as s, job.settings as st;"
            "s.get_params_factory(st.load({'MIGRATE_DATABASE_URL': 'postgresql://u:p@h/d'}))(False);"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('boto3', 'botocore', 'azure', 'msal')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
