"""Finding pg_dump/pg_restore and checking they can handle the server (NOTES §8).

pg_dump refuses a server of a newer major version, and the failure would otherwise surface only
after the lock is held and the upload has started. We compare versions up front and name both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from job.errors import BackupError

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class PgTools:
    pg_dump: str
    pg_restore: str
    dump_version: str  # "18.6"
    restore_version: str

    @property
    def dump_major(self) -> int:
        return int(self.dump_version.split(".")[0])

    @property
    def restore_major(self) -> int:
        return int(self.restore_version.split(".")[0])


def find_tool(name: str, environ: Mapping[str, str]) -> str:
    """``MIGRATE_PG_BIN_DIR`` first, then the job's PATH."""
    bin_dir = environ.get("MIGRATE_PG_BIN_DIR")
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if os.access(path, os.X_OK):
            return path
        raise BackupError(f"{name} not found in MIGRATE_PG_BIN_DIR={bin_dir}")
    found = shutil.which(name, path=environ.get("PATH", os.defpath))
    if not found:
        raise BackupError(
            f"{name} not found on PATH: install the PostgreSQL client matching the server "
            "(e.g. postgresql-client-18) or set MIGRATE_PG_BIN_DIR"
        )
    return found


def tool_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                             check=False)
    except OSError as exc:
        raise BackupError(f"cannot run {path}: {exc}") from None
    m = _VERSION.search(out.stdout)
    if out.returncode != 0 or not m:
        raise BackupError(f"cannot read the version of {path}: {out.stdout or out.stderr!r}")
    return f"{m.group(1)}.{m.group(2) or 0}"


def server_version_text(version_num: int) -> str:
    major = version_num // 10000
    return f"{major}.{version_num % 10000}" if major >= 10 else str(version_num)


def find_tools(environ: Mapping[str, str], server_version_num: int) -> PgTools:
    """Locate both tools and refuse a client older than the server, naming both versions."""
    dump = find_tool("pg_dump", environ)
    restore = find_tool("pg_restore", environ)
    tools = PgTools(dump, restore, tool_version(dump), tool_version(restore))
    server_major = server_version_num // 10000
    if tools.dump_major < server_major:
        raise BackupError(
            f"pg_dump {tools.dump_version} ({dump}) is older than the PostgreSQL "
            f"{server_version_text(server_version_num)} server and cannot dump it; install "
            f"pg_dump {server_major} or newer (postgresql-client-{server_major}) or point "
            "MIGRATE_PG_BIN_DIR at it",
            pg_dump_version=tools.dump_version,
            server_version=server_version_text(server_version_num),
        )
    if tools.restore_major < tools.dump_major:
        raise BackupError(
            f"pg_restore {tools.restore_version} ({restore}) cannot read archives of "
            f"pg_dump {tools.dump_version} ({dump}); use tools of the same version"
        )
    return tools
