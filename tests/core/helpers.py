"""Helpers for the core tests: write migrations, look at the database, read JSON logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import REPO, job_env


def write(directory: Path, name: str, sql: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(sql)
    return path


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def scalar(url: str, sql: str, params: Any = None) -> Any:
    rows = query(url, sql, params)
    return rows[0][0] if rows else None


def table_exists(url: str, name: str) -> bool:
    return bool(scalar(url, "SELECT to_regclass(%s) IS NOT NULL", (name,)))


def applied_ids(url: str) -> list[str]:
    if not table_exists(url, "_yoyo_migration"):
        return []
    return [r[0] for r in query(url, "SELECT migration_id FROM _yoyo_migration ORDER BY 1")]


def advisory_locks(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"))


def events(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def summary(stderr: str) -> dict[str, Any]:
    found = [e for e in events(stderr) if e.get("event") == "migrate.summary"]
    assert found, f"no migrate.summary event in:\n{stderr}"
    return found[-1]


def env_for(url: str, mdir: Path, **extra: str) -> dict[str, str]:
    return {"MIGRATE_DATABASE_URL": url, "MIGRATE_MIGRATIONS_DIR": str(mdir),
            "MIGRATE_LOCK_WAIT": "30s", "MIGRATE_DB_WAIT": "10s", **extra}


def popen_job(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "job", *args], env=job_env(**env), cwd=str(REPO),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def backend_running(url: str, fragment: str) -> bool:
    return bool(scalar(
        url, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND state = 'active' "
        "AND pid <> pg_backend_pid()", (f"%{fragment}%",)))


def kill(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    os.kill(proc.pid, sig)
