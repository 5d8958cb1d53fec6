"""Through PgBouncer: transaction pooling is refused before anything runs; session pooling works.

Uses Debian's pgbouncer binary (installed by `make test-tools`)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from job.pgserver import free_port
from tests.core.helpers import applied_ids, env_for, summary, table_exists, write

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture(params=["transaction", "session"])
def bouncer(request: pytest.FixtureRequest, database_url: str) -> Iterator[tuple[str, str]]:
    assert os.path.exists(PGBOUNCER), "pgbouncer missing: run `make test-tools`"
    mode = request.param
    parts = urlsplit(database_url)
    db = parts.path.lstrip("/")
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    port = free_port()
    (workdir / "pgbouncer.ini").write_text(
        f"[databases]\n{db} = host=127.0.0.1 port={parts.port} dbname={db} "
        f"user={parts.username} password={parts.password}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = any\n"
        f"pool_mode = {mode}\ndefault_pool_size = 4\nunix_socket_dir =\n"
        f"logfile = {workdir}/pgbouncer.log\npidfile = {workdir}/pgbouncer.pid\n"
        "ignore_startup_parameters = extra_float_digits,options\n")
    cmd = [PGBOUNCER, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        user = pwd.getpwnam("postgres" if _has_user("postgres") else "nobody")
        os.chown(workdir, user.pw_uid, user.pw_gid)
        cmd = ["runuser", "-u", user.pw_name, "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"postgresql://{parts.username}:x@127.0.0.1:{port}/{db}"
    deadline = time.monotonic() + 10
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)
    yield mode, url
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_transaction_pooling_is_refused_and_session_pooling_works(bouncer, database_url, run_job,
                                                                  tmp_path):
    mode, url = bouncer
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    res = run_job("run", env=env_for(url, mdir))
    if mode == "transaction":
        assert res.returncode == 2, res.stderr
        assert "transaction-pooling" in summary(res.stderr)["message"]
        assert not table_exists(database_url, "a")
        assert applied_ids(database_url) == []
    else:
        assert res.returncode == 0, res.stderr
        assert applied_ids(database_url) == ["0001_a"]
