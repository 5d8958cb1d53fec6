"""Watching a running migration statement from the lock connection.

One background thread per apply, polling the migration backend from the dedicated lock
connection (under ``ctx.lock_mutex``: psycopg connections are not shared between threads). It
does two things:

- **blockers**: once a statement has waited a third of ``lock_timeout``, it records who blocks
  it (``pg_blocking_pids``). After ``lock_timeout`` fires the wait is over and the blockers are
  gone, so the retry and failure messages need them captured during the wait.
- **heartbeats**: every ``MIGRATE_HEARTBEAT`` seconds of a statement, a ``migration.heartbeat``
  event with the elapsed time, the backend's wait event, who blocks it, and, for index builds,
  ``CLUSTER``/``VACUUM FULL`` and ``COPY``, the phase and percentage from
  ``pg_stat_progress_*``. A 20-minute ``CREATE INDEX CONCURRENTLY`` must not look hung.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from job import redact

if TYPE_CHECKING:
    import psycopg

BLOCKERS_SQL = """
SELECT a.pid, a.application_name, host(a.client_addr), a.state,
       left(a.query, 200), round(extract(epoch FROM now() - a.xact_start)::numeric, 1)
FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(%s))
"""


def activity_sql(server_version: int) -> str:
    """One round trip: the backend's state and wait event plus any progress view's row.
    pg_stat_progress_create_index and _cluster exist since PostgreSQL 12, _copy since 14."""
    views = []
    if server_version >= 120000:
        views += ["create_index", "cluster"]
    if server_version >= 140000:
        views.append("copy")
    progress = "".join(
        f", (SELECT row_to_json(p) FROM pg_stat_progress_{v} p WHERE p.pid = a.pid) AS {v}"
        for v in views)
    return ("SELECT a.state, a.wait_event_type, a.wait_event, left(a.query, 300) AS query"
            f"{progress} FROM pg_stat_activity a WHERE a.pid = %s")


def _ratio(done: Any, total: Any) -> float | None:
    try:
        d, t = float(done), float(total)
    except (TypeError, ValueError):
        return None
    return round(min(100.0, 100.0 * d / t), 1) if t > 0 else None


def _progress(phase: str, command: str, done: Any, total: Any, unit: str) -> dict[str, Any]:
    return {"command": command, "phase": phase, "percent": _ratio(done, total),
            "done": int(done) if done is not None and _ratio(done, total) is not None else None,
            "total": int(total) if total else None, "unit": unit}


def create_index_progress(row: Mapping[str, Any]) -> dict[str, Any]:
    """Which counter means progress depends on the phase: lockers while waiting, blocks while
    scanning, tuples while sorting and loading."""
    phase = str(row.get("phase") or "")
    command = str(row.get("command") or "CREATE INDEX")
    if phase.startswith("waiting") and row.get("lockers_total"):
        return _progress(phase, command, row.get("lockers_done"), row.get("lockers_total"),
                         "lockers")
    if "scanning" in phase and row.get("blocks_total"):
        return _progress(phase, command, row.get("blocks_done"), row.get("blocks_total"),
                         "blocks")
    if row.get("tuples_total"):
        return _progress(phase, command, row.get("tuples_done"), row.get("tuples_total"),
                         "tuples")
    if row.get("blocks_total"):
        return _progress(phase, command, row.get("blocks_done"), row.get("blocks_total"),
                         "blocks")
    return _progress(phase, command, None, None, "")


def cluster_progress(row: Mapping[str, Any]) -> dict[str, Any]:
    phase = str(row.get("phase") or "")
    command = str(row.get("command") or "CLUSTER")
    if phase == "writing new heap" and row.get("heap_tuples_scanned"):
        return _progress(phase, command, row.get("heap_tuples_written"),
                         row.get("heap_tuples_scanned"), "tuples")
    return _progress(phase, command, row.get("heap_blks_scanned"), row.get("heap_blks_total"),
                     "blocks")


def copy_progress(row: Mapping[str, Any]) -> dict[str, Any]:
    command = str(row.get("command") or "COPY")
    phase = f"{command} ({str(row.get('type') or '').lower()})".replace(" ()", "")
    out = _progress(phase, command, row.get("bytes_processed"), row.get("bytes_total"), "bytes")
    out["tuples"] = row.get("tuples_processed")
    return out


_INTERPRET = {"create_index": create_index_progress, "cluster": cluster_progress,
              "copy": copy_progress}


def blockers_from_rows(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [
        {"pid": r[0], "application_name": r[1], "client_addr": r[2] or "local", "state": r[3],
         "query": redact.scrub(r[4] or ""),
         "xact_age_s": float(r[5]) if r[5] is not None else None}
        for r in rows
    ]


class StatementWatcher:
    """Blockers during lock waits, and heartbeats during long statements (see the module doc).

    ``begin(migration, statement)`` / ``end()`` bracket each statement (or pipelined batch);
    ``blockers`` holds who blocked the current one, captured while it waited.
    """

    def __init__(self, conn: psycopg.Connection[Any], mutex: threading.Lock, target_pid: int,
                 lock_timeout: float, *, heartbeat: float = 0.0, log: Any = None) -> None:
        self.conn, self.mutex, self.pid, self.log = conn, mutex, target_pid, log
        self.threshold = max(0.02, lock_timeout / 3) if lock_timeout > 0 else None
        self.heartbeat = heartbeat if log is not None else 0.0
        poll = [min(0.5, lock_timeout / 6)] if lock_timeout > 0 else []
        poll += [min(0.5, heartbeat / 4)] if self.heartbeat > 0 else []
        self.interval = max(0.01, min(poll)) if poll else 0.5
        self.active_since: float | None = None
        self.migration: str | None = None
        self.statement: str | None = None
        self.blockers: list[dict[str, Any]] = []
        self._next_beat = 0.0
        self._sql: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="statement-watcher", daemon=True)

    @property
    def enabled(self) -> bool:
        return self.threshold is not None or self.heartbeat > 0

    def start(self) -> StatementWatcher:
        if self.enabled:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def begin(self, migration: str | None = None, statement: str | None = None) -> None:
        self.blockers = []
        self.migration, self.statement = migration, statement
        self._next_beat = self.heartbeat
        self.active_since = time.monotonic()

    def end(self) -> None:
        self.active_since = None

    # -- the thread ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            since = self.active_since
            if since is None:
                continue
            elapsed = time.monotonic() - since
            try:
                if self.heartbeat > 0 and elapsed >= self._next_beat:
                    self._next_beat = (elapsed // self.heartbeat + 1) * self.heartbeat
                    self._beat(since, elapsed)
                elif self.threshold is not None and elapsed >= self.threshold:
                    self._note_blockers(since)
            except Exception:
                # Observation is best effort: a failed poll must never disturb the migration.
                continue

    def _note_blockers(self, since: float) -> None:
        with self.mutex:
            rows = self.conn.execute(BLOCKERS_SQL, (self.pid,)).fetchall()
        if rows and self.active_since == since:
            self.blockers = blockers_from_rows(rows)

    def _beat(self, since: float, elapsed: float) -> None:
        if self._sql is None:
            self._sql = activity_sql(self.conn.info.server_version)
        with self.mutex:
            cur = self.conn.execute(self._sql, (self.pid,))
            row = cur.fetchone()
            names = [d.name for d in cur.description or []]
            rows = self.conn.execute(BLOCKERS_SQL, (self.pid,)).fetchall()
        if row is None or self.active_since != since:
            return  # the statement finished while we looked
        data = dict(zip(names, row, strict=False))
        blockers = blockers_from_rows(rows)
        if blockers:
            self.blockers = blockers
        progress = None
        for view, interpret in _INTERPRET.items():
            if data.get(view):
                progress = {k: v for k, v in interpret(data[view]).items()
                            if v is not None and v != ""}
                break
        wait = (f"{data['wait_event_type']}:{data['wait_event']}"
                if data.get("wait_event_type") else None)
        fields = {
            "migration": self.migration,
            "statement": self.statement or redact.scrub(
                " ".join(str(data.get("query") or "").split())[:200]),
            "elapsed_s": round(elapsed, 1), "state": data.get("state"), "wait_event": wait,
            "blocked_by": blockers or None, "progress": progress,
        }
        self.log.info("migration.heartbeat", **{k: v for k, v in fields.items() if v is not None})
