"""The migration lock: a session advisory lock on a dedicated autocommit connection.

Why this shape (NOTES §1): a lock *row* goes stale when a pod is SIGKILLed; a session advisory
lock is released by the server when the session ends. Waiters poll ``pg_try_advisory_lock``
instead of blocking in ``pg_advisory_lock``: a blocked waiter is a transaction that
``CREATE INDEX CONCURRENTLY`` in the holder's migration would wait for, forever. And the lock
lives on its own autocommit connection so the migration connection's transactions never
include it.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from job.errors import ConfigError, LockTimeout

if TYPE_CHECKING:
    import psycopg

HOLDER_SQL = """
SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start, a.state,
       a.usename
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
        SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s AND l.objid = %s AND l.objsubid = 1
"""


def lock_key(database: str, schema: str) -> int:
    """A stable signed 64-bit key per (database, tracking schema)."""
    digest = hashlib.sha256(f"migrate-job\0{database}\0{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _split(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


class MigrationLock:
    def __init__(self, conn: psycopg.Connection[Any], log: Any) -> None:
        if not conn.autocommit:
            raise ValueError("the lock connection must be in autocommit mode")
        self.conn = conn
        self.log = log
        row = conn.execute("SELECT current_database(), current_schema()").fetchone()
        assert row is not None
        self.database, self.schema = row[0], row[1] or "public"
        self.key = lock_key(self.database, self.schema)
        self.held = False

    def holder(self) -> dict[str, Any] | None:
        row = self.conn.execute(HOLDER_SQL, _split(self.key)).fetchone()
        if row is None:
            return None
        pid, app, addr, since, state, user = row
        return {"pid": pid, "application_name": app, "client_addr": addr or "local socket",
                "since": since.isoformat() if since else None, "state": state, "user": user}

    def acquire(self, wait_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        deadline = time.monotonic() + wait_s
        delay = 0.05
        next_report = 0.0
        waited = False
        while True:
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            if row and row[0]:
                self.held = True
                self._check_same_backend()
                if waited:
                    self.log.info("lock.acquired", key=self.key, schema=self.schema)
                return
            waited = True
            now = time.monotonic()
            holder = self.holder() if now >= next_report or now >= deadline else None
            if now >= deadline:
                who = _describe(holder)
                raise LockTimeout(
                    f"another runner held the migration lock for {wait_s:g}s "
                    f"(MIGRATE_LOCK_WAIT): {who}", holder=holder)
            if holder is not None:
                self.log.info("lock.waiting", holder=holder,
                              remaining_s=round(deadline - now, 1))
                next_report = now + 10
            sleep(min(deadline - now, delay * random.uniform(0.5, 1.5)))
            delay = min(delay * 2, 2.0)

    def _check_same_backend(self) -> None:
        """Behind PgBouncer transaction pooling the next statement may reach another backend,
        where our session lock does not exist; refuse to run instead of running unlocked."""
        classid, objid = _split(self.key)
        row = self.conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1",
            (classid, objid),
        ).fetchone()
        if not row or row[0] != 1:
            raise ConfigError(_POOLING_MESSAGE)

    def check_not_shared_with(self, other: psycopg.Connection[Any]) -> None:
        """A second client session must not find our session lock on its own backend. Through a
        transaction-pooling proxy it usually does (the proxy hands it the lock holder's server
        connection), which is how such a proxy is recognised before anything runs."""
        classid, objid = _split(self.key)
        row = other.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1",
            (classid, objid),
        ).fetchone()
        if other.info.transaction_status != 0:  # leave no transaction open behind the probe
            other.rollback()
        if row and row[0]:
            raise ConfigError(_POOLING_MESSAGE)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        # Closing the session releases the lock anyway; the caller closes it next.
        with contextlib.suppress(Exception):
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))


_POOLING_MESSAGE = (
    "the migration lock does not stay with this session: the connection goes through a "
    "transaction-pooling proxy (e.g. PgBouncer pool_mode=transaction). migrate-job needs a direct "
    "connection to PostgreSQL (or session pooling); nothing was changed."
)


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "holder not visible (it may have just released it)"
    return (f"pid {holder['pid']} application_name={holder['application_name']!r} "
            f"client={holder['client_addr']} since {holder['since']}")
