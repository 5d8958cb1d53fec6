"""The old tool's lock, held (advisory locks) or checked (lock rows) for the whole import.

Holding the old tool's advisory lock, not just looking at it, closes the race where the old tool
starts a run while we read its history: it waits for us (or times out, as Prisma does after
10 s) instead of changing the table under our feet. A lock row (knex) is only read: the import
leaves the old tool's tables untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from job.errors import LockTimeout

if TYPE_CHECKING:
    import psycopg

    from job.adopt.model import ToolLock

_HOLDER = """
SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s AND l.objid = %s AND l.objsubid = 1
"""


def _split(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def _holder(conn: psycopg.Connection[Any], key: int) -> str:
    row = conn.execute(_HOLDER, _split(key)).fetchone()
    if row is None:
        return "holder not visible"
    pid, app, addr, since = row
    return (f"held by pid {pid} application_name={app!r} client={addr or 'local socket'} "
            f"since {since:%Y-%m-%d %H:%M:%S}")


def _row_held(conn: psycopg.Connection[Any], lock: ToolLock) -> bool:
    import psycopg
    from psycopg import sql

    try:
        if lock.held_sql is not None and conn.execute(lock.held_sql).fetchone() is not None:
            return True
        if lock.busy_table is not None:
            # A shared row lock, released when this autocommit statement ends; changes nothing.
            conn.execute(sql.SQL("SELECT 1 FROM {} FOR SHARE NOWAIT").format(
                lock.busy_table.sql()))
    except psycopg.errors.LockNotAvailable:
        return True
    except psycopg.errors.ReadOnlySqlTransaction:
        return False  # --dry-run's read-only session: the committed row said free
    except psycopg.errors.UndefinedTable:
        return False  # no lock table: the tool never ran here (autocommit: nothing to undo)
    return False


@contextmanager
def hold(conn: psycopg.Connection[Any], lock: ToolLock | None, tool: str) -> Iterator[None]:
    """Refuse (exit 4) when the old tool's lock is held; hold its advisory keys meanwhile."""
    if lock is None:
        yield
        return
    if (lock.held_sql is not None or lock.busy_table is not None) and _row_held(conn, lock):
        raise LockTimeout(f"{lock.name} is held: a {tool} run is in progress or was killed "
                          f"holding it. Nothing was imported; import when {tool} is done (or "
                          "release its lock after checking no run is active).", lock=lock.name)
    taken: list[int] = []
    try:
        for key in lock.advisory_keys:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not (row and row[0]):
                raise LockTimeout(
                    f"{lock.name} is {_holder(conn, key)} (advisory key {key}): a {tool} run is "
                    f"in progress. Nothing was imported; import when it has finished.",
                    lock=lock.name, key=key)
            taken.append(key)
        yield
    finally:
        for key in taken:
            with suppress(Exception):
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
