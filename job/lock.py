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
import os
import random
import threading
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


# -- yoyo's lock ---------------------------------------------------------------------------------
# yoyo 9 (backends/base.py ``lock()``): every ``yoyo`` command that changes or reads the history
# INSERTs the row ``locked = 1`` into ``yoyo_lock`` and commits it, retrying every 0.5 s while the
# primary key is taken (default: 10 s, then ``LockTimeout``), and DELETEs it when done. A
# committed row is what goes stale when a yoyo process is killed (NOTES §1).
#
# The job holds the same row, but never commits it: the INSERT stays in an open transaction on a
# session of its own. A ``yoyo`` INSERT of the same key then waits for that transaction (a
# uniqueness check waits for the inserting transaction to end), and our ROLLBACK at the end lets
# it through to find everything applied. A crash commits nothing: when the process dies, its
# session ends and the server rolls the transaction back, so the advisory lock stays the only
# thing a crash could hold, and the server releases that too.
YOYO_LOCK_TABLE = "yoyo_lock"
YOYO_LOCK_CREATE_SQL = (
    'CREATE TABLE IF NOT EXISTS yoyo_lock ("locked" INT DEFAULT 1, "ctime" TIMESTAMP, '
    '"pid" INT NOT NULL, PRIMARY KEY ("locked"))'
)
# The session holding the row must not be ended for idling in its transaction (a server-wide
# idle_in_transaction_session_timeout would otherwise end it mid-run); TCP keepalives make the
# server notice a vanished client (a node lost with its pod) within about a minute.
YOYO_SESSION_SQL = (
    "SET idle_in_transaction_session_timeout = 0; SET lock_timeout = '2s'; "
    "SET statement_timeout = '30s'; SET tcp_keepalives_idle = 20; "
    "SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"
)

# A session that waits for our yoyo_lock row holds a snapshot, and CREATE INDEX CONCURRENTLY (or
# REINDEX CONCURRENTLY) in our migration waits for every older snapshot: each waits for the
# other, through us, where PostgreSQL's deadlock detector cannot see it. Such a waiter's
# statement is cancelled (yoyo then retries, or gives up after its own lock timeout).
DEADLOCKED_WAITERS_SQL = """
SELECT w.pid, w.application_name, host(w.client_addr)
FROM pg_stat_activity w
WHERE w.pid = ANY(pg_blocking_pids(%(migration)s)) AND %(holder)s = ANY(pg_blocking_pids(w.pid))
"""


class YoyoLock:
    """yoyo's ``yoyo_lock`` row, held in a transaction that is never committed."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], log: Any,
                 on_connect: Callable[[psycopg.Connection[Any]], None] | None = None) -> None:
        self.connect = connect
        self.log = log
        # Run on the new session before it opens its long transaction (the pooling check: a
        # transaction-pooling proxy pins that transaction to a server connection, after which
        # a later session would no longer be handed the lock holder's).
        self.on_connect = on_connect
        self.conn: psycopg.Connection[Any] | None = None
        self.held = False

    @property
    def pid(self) -> int | None:
        return self.conn.info.backend_pid if self.conn is not None else None

    def acquire(self, deadline: float, sleep: Callable[[float], None] = time.sleep) -> None:
        import psycopg
        from psycopg import errors

        conn = self.connect()
        self.conn = conn
        if self.on_connect is not None:
            self.on_connect(conn)
        conn.execute(YOYO_SESSION_SQL)
        conn.commit()
        if not self._ensure_table(conn):
            return
        delay = 0.05
        next_report = 0.0
        waited = False
        while True:
            try:
                conn.execute('INSERT INTO yoyo_lock ("locked", "ctime", "pid") VALUES (1, %s, %s)',
                             (_utc_naive(), os.getpid() & 0x7FFFFFFF))
            except (errors.UniqueViolation, errors.LockNotAvailable):
                conn.rollback()
            except errors.InsufficientPrivilege as exc:
                conn.rollback()
                self._unavailable(exc, "cannot INSERT into yoyo_lock (created by another role?)")
                return
            except psycopg.Error:
                conn.rollback()
                raise
            else:
                self.held = True  # and the transaction stays open until release()
                if waited:
                    self.log.info("lock.yoyo_acquired")
                return
            waited = True
            now = time.monotonic()
            if now >= deadline or now >= next_report:
                holder = self.holder()
                if now >= deadline:
                    raise LockTimeout(
                        "the yoyo CLI held yoyo's migration lock past MIGRATE_LOCK_WAIT: "
                        f"{_describe_yoyo(holder)}", holder=holder)
                self.log.info("lock.waiting", holder=holder,
                              remaining_s=round(deadline - now, 1))
                next_report = now + 10
            sleep(max(0.0, min(deadline - now, delay * random.uniform(0.5, 1.5))))
            delay = min(delay * 2, 1.0)

    def _ensure_table(self, conn: psycopg.Connection[Any]) -> bool:
        """yoyo creates ``yoyo_lock`` on every connect; so do we (a yoyo run may start on this
        database at any moment). Without the privilege to create it nobody can take it."""
        from psycopg import errors

        row = conn.execute("SELECT to_regclass('yoyo_lock') IS NOT NULL").fetchone()
        conn.commit()
        if row and row[0]:
            return True
        try:
            conn.execute(YOYO_LOCK_CREATE_SQL)
            conn.commit()
        except (errors.UniqueViolation, errors.DuplicateTable):
            conn.rollback()  # a yoyo CLI created it at the same moment
        except errors.InsufficientPrivilege as exc:
            conn.rollback()
            self._unavailable(exc, "cannot create yoyo_lock")
            return False
        return True

    def _unavailable(self, exc: Exception, what: str) -> None:
        """Without the privilege a yoyo CLI run as this role could not lock either; a deploy
        is not refused for it, but the log says the yoyo CLI is not kept out."""
        self.log.warning("lock.yoyo_lock_unavailable", error=str(exc).strip(),
                         reason=f"{what}: running with the migration lock only; a yoyo CLI "
                                "run by another role is not kept out (GRANT INSERT, DELETE ON "
                                "yoyo_lock to this role)")

    def holder(self) -> dict[str, Any] | None:
        """The committed row of a yoyo CLI run (its client-side pid and start time)."""
        if self.conn is None:
            return None
        try:
            row = self.conn.execute('SELECT "pid", "ctime" FROM yoyo_lock').fetchone()
            self.conn.rollback()
        except Exception:
            return None
        if row is None:
            return None
        return {"kind": "yoyo_lock", "tool": "yoyo CLI", "pid": row[0],
                "since": row[1].isoformat() + "Z" if row[1] else None}

    def release(self) -> None:
        conn, self.conn, self.held = self.conn, None, False
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.rollback()  # the row was never committed: nobody else ever saw it
        with contextlib.suppress(Exception):
            conn.close()


class YoyoWaiterGuard:
    """Breaks the one deadlock PostgreSQL cannot see: a session waiting for our yoyo_lock row
    that our CONCURRENTLY statement waits for (see DEADLOCKED_WAITERS_SQL)."""

    def __init__(self, conn: psycopg.Connection[Any], mutex: Any, migration_pid: int,
                 holder_pid: int, log: Any, interval: float = 0.3) -> None:
        self.conn, self.mutex, self.log, self.interval = conn, mutex, log, interval
        self.params = {"migration": migration_pid, "holder": holder_pid}
        self.cancelled: list[int] = []
        self.refused: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="yoyo-waiter-guard",
                                        daemon=True)

    def start(self) -> YoyoWaiterGuard:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.check()

    def check(self) -> None:
        import psycopg

        with self.mutex:
            rows = self.conn.execute(DEADLOCKED_WAITERS_SQL, self.params).fetchall()
            for pid, app, addr in rows:
                try:
                    self.conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
                except psycopg.Error as exc:
                    if pid not in self.refused:
                        self.refused.append(pid)
                        self.log.warning(
                            "lock.yoyo_waiter_not_cancelled", pid=pid, application_name=app,
                            error=str(exc).strip(),
                            reason="a session waiting for yoyo_lock blocks a CONCURRENTLY "
                                   "statement of this run and this role may not cancel it; "
                                   "the statement waits until lock_timeout")
                    continue
                self.cancelled.append(pid)
                self.log.warning(
                    "lock.yoyo_waiter_cancelled", pid=pid, application_name=app,
                    client_addr=addr or "local",
                    reason="it waits for migrate-job's yoyo_lock while holding a snapshot that "
                           "a CONCURRENTLY statement of this run must wait for (a deadlock "
                           "PostgreSQL cannot detect); its statement was cancelled, yoyo "
                           "retries or gives up after its own lock timeout")


def _utc_naive() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(tzinfo=None)


def _describe_yoyo(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "holder not visible (it may have just released it)"
    return (f"yoyo_lock row of process {holder['pid']} since {holder['since']} (if that yoyo "
            "process is gone, its lock is stale: yoyo leaves it behind when killed; remove it "
            "with `yoyo break-lock`)")
