"""Applying and rolling back migrations on ONE connection, each atomically with its records.

A transactional migration, its ``_yoyo_migration``/``_yoyo_log`` rows and our checksum record
commit in one transaction: a crash at any instant leaves it fully applied and recorded, or not
at all (yoyo commits the migration and its records separately — NOTES §2). Non-transactional
migrations run statement by statement in autocommit; a failure reports exactly what ran.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from job import redact, signals, tracking
from job.errors import MigrationFailed, VerificationFailed
from job.migrations import Migration, Step, line_of_error
from job.progress import StatementWatcher

if TYPE_CHECKING:
    import psycopg

    from job.settings import Settings

LOCK_NOT_AVAILABLE = "55P03"

INVALID_INDEXES_SQL = """
SELECT n.nspname || '.' || c.relname
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


# The watcher (blockers during lock waits, heartbeats during long statements) lives in
# job.progress; the name it had before heartbeats stays importable.
BlockerWatcher = StatementWatcher


@dataclass
class Applied:
    id: str
    duration_s: float
    transactional: bool

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "duration_s": round(self.duration_s, 3)}


class Applier:
    def __init__(self, conn: psycopg.Connection[Any], settings: Settings, log: Any,
                 watcher: StatementWatcher | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.conn = conn
        self.settings = settings
        self.log = log
        self.watcher = watcher
        self.sleep = sleep
        self.cur = conn.cursor()
        self.applied: list[Applied] = []

    # -- apply -------------------------------------------------------------------------------
    def apply(self, pending: Sequence[Migration], post_apply: Sequence[Migration]) -> list[Applied]:
        if self.settings.tx_mode == "all":
            self._apply_batched(pending)
        else:
            for m in pending:
                if m.transactional:
                    self._with_retries(functools.partial(self._run_transactional, [m]))
                else:
                    self._run_nontransactional(m)
        if pending:
            for hook in post_apply:
                self._run_hook(hook)
        return self.applied

    def _apply_batched(self, pending: Sequence[Migration]) -> None:
        batch: list[Migration] = []
        for m in [*pending, None]:
            if m is not None and m.transactional:
                batch.append(m)
                continue
            if batch:
                todo = list(batch)
                self._with_retries(functools.partial(self._run_transactional, todo))
                batch = []
            if m is not None:
                self._run_nontransactional(m)

    def _with_retries(self, run: Callable[[], None]) -> None:
        attempt = 0
        while True:
            try:
                run()
                return
            except _LockTimeoutHit as hit:
                attempt += 1
                if attempt > self.settings.lock_retries:
                    raise hit.failure from None
                wait = min(30.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                self.log.warning(
                    "migration.lock_timeout_retry", migration=hit.failure.details["migration"],
                    attempt=attempt, of=self.settings.lock_retries, retry_in_s=round(wait, 2),
                    lock_timeout_s=self.settings.lock_timeout, blockers=hit.blockers,
                )
                self.sleep(wait)

    def _run_transactional(self, ms: list[Migration]) -> None:
        if all(s.single for m in ms for s in (*m.exec_steps(), *m.verify_steps())):
            durations = self._pipelined(ms)
        else:
            durations = self._step_by_step(ms)
        for m in ms:
            self.applied.append(Applied(m.id, durations[m.id], True))
            self.log.info("migration.applied", migration=m.id,
                          duration_s=round(durations[m.id], 3))

    def _pipelined(self, ms: list[Migration]) -> dict[str, float]:
        """BEGIN, each migration's statements and its tracking record go in one round trip;
        the COMMIT follows once everything succeeded. The first cursor without a result is
        the statement that failed."""
        import psycopg

        sent: list[tuple[Migration, Step | None, Any]] = []
        if self.watcher:
            self.watcher.begin(ms[0].id if len(ms) == 1 else None)
        try:
            try:
                with self.conn.pipeline():
                    for m in ms:
                        self.log.info("migration.start", migration=m.id, transactional=True)
                        self.conn.cursor().execute(tracking.STARTED_SQL)
                        for step in (*m.exec_steps(), *m.verify_steps()):
                            cur = self.conn.cursor()
                            sent.append((m, step, cur))
                            cur.execute(step.apply)  # type: ignore[arg-type]
                        cur = self.conn.cursor()
                        sent.append((m, None, cur))
                        cur.execute(tracking.RECORD_SQL, tracking.record_params(
                            self.settings, m, operation="apply", how="applied"))
            except psycopg.Error as exc:
                failed = next(((m, st) for m, st, c in sent if c.pgresult is None), None)
                if failed is None or failed[1] is None:
                    raise
                blockers = self.watcher.blockers if self.watcher else []
                failure = self._failure(failed[0], failed[1], exc, blockers=blockers)
                if exc.sqlstate == LOCK_NOT_AVAILABLE:
                    raise _LockTimeoutHit(failure, blockers) from None
                raise failure from None
            finally:
                if self.watcher:
                    self.watcher.end()
            durations = {m.id: (c.fetchone()[0] or 0) / 1000 for m, st, c in sent if st is None}
            for m, st, c in sent:
                if st is not None and st.verify:
                    self._check_verify_result(m, st, c)
            with signals.critical():
                self.conn.commit()
        except BaseException:
            self._rollback_quietly()
            raise
        return durations

    def _step_by_step(self, ms: list[Migration]) -> dict[str, float]:
        durations: dict[str, float] = {}
        try:
            for m in ms:
                self.log.info("migration.start", migration=m.id, transactional=True)
                started = time.monotonic()
                for step in m.exec_steps():
                    self._exec(m, step)
                for step in m.verify_steps():
                    self._exec(m, step)
                    self._check_verify_result(m, step, self.cur)
                durations[m.id] = time.monotonic() - started
                # Record inside the same transaction as the migration itself.
                self.cur.execute(tracking.RECORD_SQL, tracking.record_params(
                    self.settings, m, operation="apply", how="applied",
                    duration_ms=int(durations[m.id] * 1000)))
            with signals.critical():
                self.conn.commit()
        except BaseException:
            self._rollback_quietly()
            raise
        return durations

    def _run_nontransactional(self, m: Migration) -> None:
        self.log.info("migration.start", migration=m.id, transactional=False)
        started = time.monotonic()
        executed: list[str] = []
        self._autocommit(True)
        try:
            for step in m.exec_steps():
                # Nothing of a statement that timed out waiting for its lock ran, so retrying
                # just that statement is safe (the earlier ones are already committed).
                self._with_retries(functools.partial(self._exec, m, step, executed=executed))
                if isinstance(step.apply, str):
                    executed.append(step.describe())
        finally:
            self._autocommit(False)
        duration = time.monotonic() - started
        try:
            # The verify script and the record commit together: a migration that fails its
            # verification stays unrecorded (a rerun applies its idempotent statements again).
            for step in m.verify_steps():
                self._verify_nontransactional(m, step, executed)
            self.cur.execute(tracking.RECORD_SQL, tracking.record_params(
                self.settings, m, operation="apply", how="applied",
                duration_ms=int(duration * 1000)))
            with signals.critical():
                self.conn.commit()
        except BaseException:
            self._rollback_quietly()
            raise
        self.applied.append(Applied(m.id, duration, False))
        self.log.info("migration.applied", migration=m.id, duration_s=round(duration, 3))

    def _run_hook(self, hook: Migration) -> None:
        self.log.info("post_apply.start", hook=hook.id)

        def run_steps() -> None:
            for step in hook.exec_steps():
                self._exec(hook, step)

        self._atomically(hook, run_steps, tracking.LOG_ONLY_SQL, operation="apply",
                         how="post-apply")
        self.log.info("post_apply.done", hook=hook.id)

    def _atomically(self, m: Migration, run_steps: Callable[[], None], record_sql: str, *,
                    operation: str, how: str) -> None:
        """Steps (in autocommit for a non-transactional migration), then the tracking change
        and the commit; on any failure roll back what is still open and re-raise."""
        try:
            if not m.transactional:
                self._autocommit(True)
            run_steps()
            self._autocommit(False)
            self.cur.execute(record_sql, tracking.record_params(
                self.settings, m, operation=operation, how=how))
            with signals.critical():
                self.conn.commit()
        except BaseException:
            self._rollback_quietly()
            self._autocommit(False)
            raise

    # -- rollback ----------------------------------------------------------------------------
    def rollback(self, m: Migration) -> float:
        """Run the rollback steps in reverse, and forget the migration, atomically."""
        import psycopg

        started = time.monotonic()
        self.log.info("rollback.start", migration=m.id)
        def run_steps() -> None:
            for step in reversed(m.steps):
                if step.rollback is None:
                    continue
                try:
                    self._call(step.rollback)
                except psycopg.Error as exc:
                    raise self._failure(m, step, exc, rollback=True) from None

        self._atomically(m, run_steps, tracking.FORGET_SQL, operation="rollback", how="rollback")
        duration = time.monotonic() - started
        self.log.info("rollback.done", migration=m.id, duration_s=round(duration, 3))
        return duration

    # -- verify scripts ----------------------------------------------------------------------
    def _check_verify_result(self, m: Migration, step: Step, cur: Any) -> None:
        """A verify query passes when the first column of its first row is true (or any
        other non-NULL value); a statement that returns no result set passes by not failing."""
        problem = _verify_problem(cur)
        if problem is None:
            return
        where = f"{step.path}:{step.line}" if step.line else step.path
        raise MigrationFailed(
            f"migration {m.id} failed its verify script at {where}: {problem}: "
            f"{step.describe()} (the migration was rolled back)",
            migration=m.id, file=step.path, line=step.line, sqlstate=None,
            server_message=problem, detail=None, hint=None, statement=step.describe(),
            verify=True)

    def _verify_nontransactional(self, m: Migration, step: Step, executed: list[str]) -> None:
        import psycopg

        where = f"{step.path}:{step.line}" if step.line else step.path
        try:
            self._call(step.apply)  # type: ignore[arg-type]
            problem = _verify_problem(self.cur)
        except psycopg.Error as exc:
            problem = f"[{exc.sqlstate}] " + redact.scrub(
                exc.diag.message_primary or str(exc).strip())
            self._rollback_quietly()
        if problem is None:
            return
        invalid = self._invalid_indexes()
        text = (f"migration {m.id} failed its verify script at {where}: {problem}: "
                f"{step.describe()}. Its {len(executed)} non-transactional statement(s) stayed "
                "applied and the migration is NOT recorded: the next run applies it again "
                "(its statements must be idempotent) and verifies again")
        if invalid:
            text += "; INVALID index(es): " + ", ".join(invalid)
        raise VerificationFailed(
            text, migration=m.id, file=step.path, line=step.line, server_message=problem,
            statement=step.describe(), executed_statements=list(executed),
            invalid_indexes=invalid, verify=True)

    # -- statements --------------------------------------------------------------------------
    def _exec(self, m: Migration, step: Step, executed: list[str] | None = None) -> None:
        import psycopg

        if step.apply is None:
            return
        if self.watcher:
            self.watcher.begin(m.id, step.describe())
        try:
            if step.ignore_errors in ("apply", "all") and not self.conn.autocommit:
                try:
                    with self.conn.transaction():  # a savepoint
                        self._call(step.apply)
                except psycopg.Error as exc:
                    self.log.warning("migration.step_error_ignored", migration=m.id,
                                     line=step.line, error=redact.scrub(str(exc)))
            else:
                self._call(step.apply)
        except psycopg.Error as exc:
            blockers = self.watcher.blockers if self.watcher else []
            failure = self._failure(m, step, exc, executed=executed, blockers=blockers)
            if exc.sqlstate == LOCK_NOT_AVAILABLE:
                raise _LockTimeoutHit(failure, blockers) from None
            raise failure from None
        finally:
            if self.watcher:
                self.watcher.end()

    def _call(self, action: str | Callable[[Any], None]) -> None:
        if isinstance(action, str):
            # Result sets of SELECTs are discarded: stdout stays ours (yoyo prints them).
            self.cur.execute(action)
        else:
            action(self.conn)

    def _failure(self, m: Migration, step: Step, exc: Any, *, executed: list[str] | None = None,
                 blockers: list[dict[str, Any]] | None = None, rollback: bool = False
                 ) -> MigrationFailed:
        diag = exc.diag
        path = m.rollback_path if rollback else (step.path or m.path)
        line = step.rollback_line if rollback else line_of_error(step, _int(
            diag.statement_position))
        where = f"{path}:{line}" if line else path
        primary = redact.scrub(diag.message_primary or str(exc).strip())
        detail = redact.scrub(diag.message_detail) if diag.message_detail else None
        hint = redact.scrub(diag.message_hint) if diag.message_hint else None
        verb = ("rollback of" if rollback else "verify script of migration" if step.verify
                else "migration")
        text = f"{verb} {m.id} failed at {where}: [{exc.sqlstate}] {primary}"
        if detail:
            text += f" DETAIL: {detail}"
        if hint:
            text += f" HINT: {hint}"
        details: dict[str, Any] = {
            "migration": m.id, "file": path, "line": line, "sqlstate": exc.sqlstate,
            "server_message": primary, "detail": detail, "hint": hint,
            "statement": step.describe() if not rollback else None,
        }
        if blockers:
            details["blockers"] = blockers
        if executed is not None:
            # Non-transactional: these statements stay applied; say so exactly.
            details["executed_statements"] = list(executed)
            details["invalid_indexes"] = self._invalid_indexes()
            text += (f" ({len(executed)} earlier statement(s) of this non-transactional "
                     "migration stayed applied")
            if details["invalid_indexes"]:
                text += "; INVALID index(es) left behind: " + ", ".join(
                    details["invalid_indexes"]) + " (DROP INDEX CONCURRENTLY before retrying)"
            text += ")"
        return MigrationFailed(text, **details)

    def _invalid_indexes(self) -> list[str]:
        try:
            return [r[0] for r in self.cur.execute(INVALID_INDEXES_SQL).fetchall()]
        except Exception:
            return []

    def _autocommit(self, value: bool) -> None:
        if self.conn.autocommit != value:
            self.conn.autocommit = value

    def _rollback_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.rollback()


class _LockTimeoutHit(Exception):
    def __init__(self, failure: MigrationFailed, blockers: list[dict[str, Any]]) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.blockers = blockers


def _verify_problem(cur: Any) -> str | None:
    if cur.description is None:
        return None
    row = cur.fetchone()
    if row is None:
        return "the query returned no row"
    if row[0] is None:
        return "the query returned NULL"
    if row[0] is False:
        return "the query returned false"
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
