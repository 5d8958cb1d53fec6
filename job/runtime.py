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
from job.errors import ConfigError, Interrupted, JobError, PendingMigrations
from job.log import get_logger

if TYPE_CHECKING:
    import psycopg

    from job.lock import MigrationLock
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
    mig_conn: psycopg.Connection[Any] | None = None
    lock_mutex: threading.Lock = field(default_factory=threading.Lock)
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

    def take_lock(self) -> MigrationLock:
        from job.lock import MigrationLock

        assert self.lock_conn is not None
        self.lock = MigrationLock(self.lock_conn, self.log)
        self.lock.acquire(self.settings.lock_wait)
        self.log.info("lock.held", key=self.lock.key, schema=self.lock.schema)
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

    def connect_migration(self) -> psycopg.Connection[Any]:
        """The one connection all migration statements of this run use."""
        import psycopg

        try:
            conn = db.connect(self.get_params(False), autocommit=False, purpose="migrate")
        except psycopg.OperationalError:
            # Rotated between the two connections: the waiting logic re-fetches once.
            conn, _ = db.wait_for_database(self.get_params, self.settings, self.log,
                                           autocommit=False, purpose="migrate")
        self.mig_conn = conn
        if self.lock is not None:
            with self.lock_mutex:
                self.lock.check_not_shared_with(conn)
        db.prepare_session(conn, self.settings, migration=True)
        return conn

    def close(self) -> None:
        if self.mig_conn is not None:
            _close_quietly(self.mig_conn)
            self.mig_conn = None
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
        body(ctx)
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
        log.warning(f"{command}.interrupted", signal=exc.signum)
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
