"""The edge every command runs through: connections, the lock, error -> exit code, the summary.

Commands raise ``JobError``s where they understand a failure; this module turns them (and
signals, and bugs) into the CONTRACT exit code, the ``migrate.summary`` event, the termination
message and the GitHub summary, and always releases the lock and closes connections.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from job import db, redact, report, signals, tracking
from job.errors import (
    ConcurrentChange,
    ConfigError,
    DatabaseUnavailable,
    Interrupted,
    JobError,
    MigrationFailed,
    PendingMigrations,
)
from job.log import get_logger

if TYPE_CHECKING:
    import psycopg

    from job.lock import MigrationLock, YoyoLock, YoyoWaiterGuard
    from job.settings import Settings

# Commands whose runs are written to _migrate_job_run.
RECORDED = {"run", "exec", "rollback", "undo", "mark", "unmark", "accept-changes", "restore",
            "baseline", "import", "accept-schema", "stamp-environment"}
# Commands that run the deploy pipeline (their phase is recorded, their outcome refined).
PIPELINE = {"run", "exec"}
# Commands that write the termination message and the GitHub summary.
DEPLOY_REPORTED = {"run", "demo"}


@dataclass
class Context:
    settings: Settings
    command: str
    log: Any
    summary: report.Summary
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_mono: float = field(default_factory=time.monotonic)
    started_utc: Any = field(default_factory=tracking.now_utc)
    params: db.ConnParams | None = None
    lock_conn: psycopg.Connection[Any] | None = None
    lock: MigrationLock | None = None
    yoyo_lock: YoyoLock | None = None
    yoyo_guard: YoyoWaiterGuard | None = None
    mig_conn: psycopg.Connection[Any] | None = None
    lock_mutex: threading.Lock = field(default_factory=threading.Lock)
    # Connections being opened ahead of use (db.Prefetch), closed by close() if never taken.
    prefetched: dict[str, db.Prefetch] = field(default_factory=dict)
    # Opened connections lent out once before their own use (``borrow``) and given back idle.
    ready: dict[str, psycopg.Connection[Any]] = field(default_factory=dict)
    _get_params: Callable[[bool], db.ConnParams] | None = None

    # -- connections ---------------------------------------------------------------------------
    def get_params(self, refresh: bool = False) -> db.ConnParams:
        if self._get_params is None:
            self._get_params = params_factory(self.settings)
        params = self._get_params(refresh)
        self.summary.database = params.display()
        return params

    def connect_admin(self, *, read_only: bool = False) -> psycopg.Connection[Any]:
        """Wait for the database, then open the dedicated autocommit (lock) connection."""
        conn, self.params = db.wait_for_database(self.get_params, self.settings, self.log,
                                                 autocommit=True, purpose="lock")
        self.lock_conn = conn
        self.summary.database = self.params.display()
        db.prepare_session(conn, self.settings, migration=False)
        if read_only:
            conn.execute("SET default_transaction_read_only = on")
        return conn

    def take_lock(self, *, yoyo: bool = True) -> MigrationLock:
        """Our advisory lock, then yoyo's ``yoyo_lock`` row (so a ``yoyo`` CLI run cannot
        interleave), both within ``MIGRATE_LOCK_WAIT``. ``yoyo=False`` only for ``restore``,
        whose ``pg_restore --clean`` drops and recreates yoyo_lock itself."""
        from job.lock import MigrationLock, YoyoLock

        assert self.lock_conn is not None
        deadline = time.monotonic() + self.settings.lock_wait
        if yoyo:  # its session opens while ours takes the advisory lock (if not already)
            self.prefetch("yoyo-lock")
        self.lock = MigrationLock(self.lock_conn, self.log)
        self.lock.acquire(self.settings.lock_wait)
        if yoyo:
            lock = self.lock
            self.yoyo_lock = YoyoLock(lambda: self.connection("yoyo-lock"), self.log,
                                      on_connect=lock.check_not_shared_with)
            self.yoyo_lock.acquire(deadline)
        self.log.info("lock.held", key=self.lock.key, schema=self.lock.schema,
                      yoyo_lock=bool(self.yoyo_lock and self.yoyo_lock.held))
        self._guard_environment()
        return self.lock

    def _guard_environment(self) -> None:
        """CONTRACT order: lock -> environment check, before a writing command changes
        anything (a database stamped 'production' refuses a run that says 'staging')."""
        from job import envguard

        if self.command not in envguard.WRITING:
            return
        assert self.lock_conn is not None
        with self.lock_mutex:
            status = envguard.enforce(self.lock_conn, self.settings, self.log)
        name = self.settings.environment or (status.stamp.name if status.stamp else None)
        if name:
            self.summary.extra["environment"] = name

    def prefetch(self, purpose: str) -> None:
        """Start opening the ``purpose`` connection now (migrate, yoyo-lock), for later."""
        if purpose not in self.prefetched and purpose not in self.ready:
            self.prefetched[purpose] = db.Prefetch(
                self.get_params(False), autocommit=False, purpose=purpose)

    def connection(self, purpose: str) -> psycopg.Connection[Any]:
        """The prefetched ``purpose`` connection, or a new one."""
        import psycopg

        # A prefetch opened too early (the server was still starting) fails: once more, now.
        opened = self._opened(purpose, psycopg.OperationalError)
        if opened is not None:
            return opened
        return db.connect(self.get_params(False), autocommit=False, purpose=purpose)

    def borrow(self, purpose: str) -> psycopg.Connection[Any] | None:
        """The prefetched ``purpose`` connection for a short read before its own use (the
        schema check's second session), or None if none was prefetched or it failed to open
        (the read then runs on one session; the real use connects again). Hand it back with
        ``give_back``."""
        return self._opened(purpose, Exception)

    def _opened(self, purpose: str,
                tolerated: type[Exception]) -> psycopg.Connection[Any] | None:
        """A connection given back, else the prefetched one once open; None if there is
        neither or opening it raised ``tolerated``."""
        ready = self.ready.pop(purpose, None)
        if ready is not None:
            return ready
        ahead = self.prefetched.pop(purpose, None)
        if ahead is None:
            return None
        try:
            return ahead.take()
        except tolerated:
            return None

    def give_back(self, purpose: str, conn: psycopg.Connection[Any]) -> None:
        """Keep a borrowed connection for its own use, if it is still idle and healthy."""
        if conn.closed or conn.info.transaction_status != 0:
            _close_quietly(conn)
            return
        self.ready[purpose] = conn

    def connect_migration(self) -> psycopg.Connection[Any]:
        """The one connection all migration statements of this run use."""
        import psycopg

        try:
            conn = self.connection("migrate")
        except psycopg.OperationalError:
            # Rotated between the two connections: the waiting logic re-fetches once.
            conn, _ = db.wait_for_database(self.get_params, self.settings, self.log,
                                           autocommit=False, purpose="migrate")
        self.mig_conn = conn
        if self.lock is not None:
            with self.lock_mutex:
                self.lock.check_not_shared_with(conn)
        db.prepare_session(conn, self.settings, migration=True)
        if self.yoyo_lock is not None and self.yoyo_lock.held and self.lock_conn is not None:
            from job.lock import YoyoWaiterGuard

            holder = self.yoyo_lock.pid
            assert holder is not None
            self.yoyo_guard = YoyoWaiterGuard(self.lock_conn, self.lock_mutex,
                                              conn.info.backend_pid, holder, self.log).start()
        return conn

    def close(self) -> None:
        for ahead in self.prefetched.values():
            ahead.discard()
        self.prefetched.clear()
        for conn in self.ready.values():
            _close_quietly(conn)
        self.ready.clear()
        if self.yoyo_guard is not None:
            self.yoyo_guard.stop()
            self.yoyo_guard = None
        if self.mig_conn is not None:
            _close_quietly(self.mig_conn)
            self.mig_conn = None
        if self.yoyo_lock is not None:
            self.yoyo_lock.release()
            self.yoyo_lock = None
        if self.lock is not None:
            with self.lock_mutex:
                self.lock.release()
            self.lock = None
        if self.lock_conn is not None:
            _close_quietly(self.lock_conn)
            self.lock_conn = None


def params_factory(settings: Settings) -> Callable[[bool], db.ConnParams]:
    from job import secrets

    factory = getattr(secrets, "get_params_factory", None)
    if factory is not None:
        return factory(settings)
    source = secrets.source_for(settings)
    return lambda refresh: source.fetch()


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def execute(settings: Settings, command: str, body: Callable[[Context], None]) -> int:
    """Run one command body at the edge and return its exit code."""
    log = get_logger()
    ctx = Context(settings=settings, command=command, log=log,
                  summary=report.Summary(command=command, database=configured_database(settings)))
    signals.install()
    redact.add(settings.notify_url)  # webhook URLs carry their credential in the path
    exit_code = 0
    try:
        try:
            body(ctx)
        except JobError:
            raise
        except Exception as exc:
            # Failures we understand (a lost connection, a race on a tracking table, a missing
            # privilege) get their CONTRACT code here; anything else is a bug (exit 1).
            known = translate(ctx, exc)
            if known is None:
                raise
            raise known from exc
    except PendingMigrations as exc:
        exit_code = exc.exit_code
        ctx.summary.outcome, ctx.summary.message = exc.outcome, exc.message
    except JobError as exc:
        exit_code = exc.exit_code
        ctx.summary.outcome = exc.outcome
        message, details = report.dedupe_error(redact.scrub(exc.message), dict(exc.details))
        ctx.summary.message = message
        if details:
            ctx.summary.error = redact.scrub_obj(details)
        # The full details: JSON output drops what the message already says (log._dedupe);
        # the console view wants the server's words in their own line.
        log.error(f"{command}.failed", reason=exc.outcome, exit_code=exit_code,
                  error=redact.scrub(exc.message), **_flat(exc.details))
    except Interrupted as exc:
        exit_code = exc.exit_code
        ctx.summary.outcome = "interrupted"
        ctx.summary.message = (f"interrupted by signal {exc.signum}: the in-flight statement "
                               "was cancelled and rolled back")
        if exc.details:
            ctx.summary.error = redact.scrub_obj(dict(exc.details))
            ctx.summary.message = _interrupted_message(exc.signum, exc.details)
        log.warning(f"{command}.interrupted", signal=exc.signum, **_flat(exc.details))
    except Exception as exc:
        exit_code = 1
        ctx.summary.outcome = "internal_error"
        ctx.summary.message = redact.scrub(
            f"internal error (a bug in migrate-job, please report it): "
            f"{type(exc).__name__}: {exc}")
        log.error(f"{command}.internal_error", error=ctx.summary.message,
                  traceback=redact.scrub(traceback.format_exc()))
    ctx.summary.exit_code = exit_code
    if exit_code == 0 and ctx.summary.outcome == "success" and command in PIPELINE:
        ctx.summary.outcome = "applied" if ctx.summary.applied else "nothing_pending"
    _record_run_safely(ctx, exit_code)
    ctx.close()
    ctx.summary.duration_s = time.monotonic() - ctx.started_mono
    data = ctx.summary.as_dict()
    log.info("migrate.summary", **report.fit_log_line(data))
    if command in DEPLOY_REPORTED:
        report.write_termination_log(settings.termination_log, data, log)
        report.write_github_summary(settings.github_step_summary, data, log)
        report.notify(settings.notify_url, data, log)
    _last["summary"] = data
    return exit_code


_last: dict[str, Any] = {}


def translate(ctx: Context, exc: Exception) -> JobError | None:
    """A psycopg error that escaped the code that knows the details, as its CONTRACT failure.

    A lost connection is exit 3 before anything was applied (connecting, locking, planning) and
    exit 8 once the apply has begun; a race with another writer of the tracking tables is
    exit 4; a missing privilege is a configuration error (exit 2).
    """
    import psycopg
    from psycopg import errors

    if not isinstance(exc, psycopg.Error):
        return None
    where = ctx.summary.database or "the database"
    state = exc.sqlstate or ""
    text = redact.scrub(str(exc).strip() or type(exc).__name__)
    details: dict[str, Any] = {"sqlstate": exc.sqlstate, "server_message": text}
    if isinstance(exc, errors.InsufficientPrivilege):
        return ConfigError(f"the database role lacks a privilege migrate-job needs on {where}: "
                           f"{text}", **details)
    if isinstance(exc, errors.UniqueViolation | errors.SerializationFailure |
                  errors.DeadlockDetected | errors.DuplicateTable | errors.DuplicateObject):
        return ConcurrentChange(
            f"another writer changed the migration tracking tables of {where} at the same time "
            f"(a yoyo CLI run, or a tool that does not take the migration lock): [{state}] "
            f"{text}. What this run had not committed was rolled back; run again.", **details)
    if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return None
    lost = "connection lost" if ctx.mig_conn is not None or state.startswith(
        ("08", "57P")) or not state else "database error"
    if ctx.mig_conn is not None:
        applied = [a["id"] for a in ctx.summary.applied]
        return MigrationFailed(
            f"{lost} on {where} during the apply phase: {text}. This run applied and "
            f"committed: {', '.join(applied) or 'nothing'}; a migration in flight was rolled "
            "back by the server (or, if non-transactional, stopped after its last completed "
            "statement).", connection_lost=True, **details)
    return DatabaseUnavailable(
        f"{lost} on {where} before anything was applied: {text}. Nothing was changed by this "
        "run.", database=where, connection_lost=True, **details)


def _interrupted_message(signum: int, details: dict[str, Any]) -> str:
    text = (f"interrupted by signal {signum} during non-transactional migration "
            f"{details.get('migration')}: the in-flight statement was cancelled; "
            f"{len(details.get('executed_statements') or [])} earlier statement(s) stayed "
            "applied")
    invalid = details.get("invalid_indexes") or []
    if invalid:
        text += (f"; INVALID index(es) left: {', '.join(invalid)} (the next run drops and "
                 "rebuilds them)")
    return text


def last_summary() -> dict[str, Any]:
    return _last.get("summary", {})


def _record_run_safely(ctx: Context, exit_code: int) -> None:
    if ctx.command not in RECORDED or ctx.lock is None or ctx.lock_conn is None:
        return
    if signals.received() is not None:
        return
    try:
        with ctx.lock_mutex:
            if tracking.tables_exist(ctx.lock_conn)[1]:
                extra = ctx.summary.extra
                rolled = extra.get("rolled_back")
                tracking.record_run(ctx.lock_conn, ctx.settings, tracking.RunRecord(
                    run_id=ctx.run_id, command=ctx.command, started=ctx.started_utc,
                    outcome=ctx.summary.outcome, exit_code=exit_code,
                    applied=ctx.summary.applied, duration_s=time.monotonic() - ctx.started_mono,
                    phase=ctx.settings.phase if ctx.command in PIPELINE else None,
                    backup=ctx.summary.backup,
                    reverted=[r["id"] for r in rolled] if rolled is not None else None,
                    undoes=extra.get("undoes", {}).get("run_id"),
                    message=ctx.summary.message))
    except Exception as exc:
        ctx.log.warning("run_history.not_recorded", error=redact.scrub(str(exc)))


def configured_database(settings: Settings) -> str | None:
    """``user@host:port/db`` from the settings alone (no secret fetched, no connection), so a
    summary names its database even when the command stops before connecting."""
    if settings.secret_source != "env" or not settings.has_database:
        return None
    try:
        if settings.database_url:
            return db.ConnParams.from_url(settings.database_url,
                                          base=settings.libpq_params).display()
        return db.ConnParams(dict(settings.libpq_params)).display()
    except Exception:
        return None


def _flat(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if k not in {"problems"}}


def require_confirmation(yes: bool, what: str, stdin_tty: bool,
                         details: Sequence[str] = ()) -> None:
    """CONTRACT: changing commands need --yes; without it, ask on a TTY, refuse otherwise.

    ``details`` (the database, exactly what will change) are shown above the question."""
    import sys

    if yes:
        return
    if not stdin_tty:
        raise ConfigError(f"{what}: refusing without --yes (stdin is not a terminal)")
    # The prompt goes to stderr with the logs: stdout stays for results.
    for line in details:
        print(line, file=sys.stderr)
    print(f"{what}. Type 'yes' to continue: ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if answer.strip().lower() != "yes":
        raise ConfigError(f"{what}: not confirmed")


@dataclass(frozen=True)
class Confirm:
    """Confirmation for commands that can only say what will change once they have looked:
    ``check_possible`` refuses at once (before connecting) when no one could answer; calling it
    later shows the details and asks."""

    yes: bool
    stdin_tty: bool

    def check_possible(self, what: str) -> None:
        if not self.yes and not self.stdin_tty:
            raise ConfigError(f"{what}: refusing without --yes (stdin is not a terminal)")

    def __call__(self, what: str, details: Sequence[str] = ()) -> None:
        require_confirmation(self.yes, what, self.stdin_tty, details)
