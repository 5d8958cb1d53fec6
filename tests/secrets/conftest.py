"""Fixtures for the credentials tests: a role with a hostile password, a fake Key Vault over
HTTPS, AWS via moto (in-process and as a server for subprocess runs)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))

from secrets_kv import KeyVaultServer  # noqa: E402
from secrets_support import HOSTILE_PASSWORD  # noqa: E402


@dataclass
class Role:
    host: str
    port: str
    user: str
    password: str
    dbname: str

    @property
    def url_without_password(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def rds_json(self, **extra: Any) -> dict[str, Any]:
        return {"username": self.user, "password": self.password, "engine": "postgres",
                "host": self.host, "port": int(self.port), "dbname": self.dbname,
                "dbInstanceIdentifier": "prod-db", **extra}

    def encoded_url(self) -> str:
        from urllib.parse import quote

        return (f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{self.dbname}")

    def set_password(self, admin_url: str, password: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(self.user), sql.Literal(password)))
        self.password = password


@pytest.fixture
def role(pg_server: Any) -> Iterator[Role]:
    """A login role whose password is ``p@ss/w#rd% ?:é``, owning its own database."""
    name = "r_" + uuid.uuid4().hex[:10]
    parts = urlsplit(pg_server.admin_url)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(HOSTILE_PASSWORD)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(name)))
    yield Role(parts.hostname or "127.0.0.1", str(parts.port or 5432), name, HOSTILE_PASSWORD,
               name)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(autouse=True)
def _fresh_redaction() -> Iterator[None]:
    from job import redact

    redact.clear()
    yield
    redact.clear()


@pytest.fixture(scope="session")
def ca() -> Any:
    import trustme

    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def keyvault(ca: Any) -> Iterator[Any]:
    with KeyVaultServer(ca.issue_cert("127.0.0.1", "localhost")) as vault:
        yield vault


_AWS_VARS = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER",
             "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Dummy credentials and a region for boto3 (moto accepts any)."""
    for name in _AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1",
           "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """``moto_server`` as a separate process; boto3 reaches it through AWS_ENDPOINT_URL."""
    exe = Path(sys.executable).with_name("moto_server")
    assert exe.exists(), "moto[server] is not installed (pip install 'moto[server]')"
    port = _free_port()
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def moto_endpoint(moto_server: str, aws_env: dict[str, str],
                  monkeypatch: pytest.MonkeyPatch) -> str:
    """The moto server, reset, with this process's boto3 pointed at it."""
    req = urllib.request.Request(moto_server + "/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=5).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server
