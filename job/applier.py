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

from job import indexes, redact, signals, tracking
from job.errors import Interrupted, MigrationFailed, VerificationFailed
from job.migrations import Migration, Step, line_of_error
from job.progress import StatementWatcher

if TYPE_CHECKING:
    import psycopg

    from job.settings import Settings

LOCK_NOT_AVAILABLE = "55P03"
UNIQUE_VIOLATION = "23505"
TRACKING_TABLES = ("_yoyo_migration", "_yoyo_log", "_yoyo_version", "_migrate_job_migration",
                   "_migrate_job_run", "yoyo_lock")

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
        # INVALID indexes left by interrupted builds that this run dropped and rebuilt.
        self.rebuilt: list[dict[str, Any]] = []

    # -- apply -------------------------------------------------------------------------------
    def apply(self, pending: Sequence[Migration], post_apply: Sequence[Migration]) -> list[Applied]:
        if self.settings.tx_mode == "all":
            self._apply_batched(pending)
        else:
            i = 0
            while i < len(pending):
                m = pending[i]
                if not m.transactional:
                    self._run_nontransactional(m)
                    i += 1
                    continue
                group = _group(pending, i)
                # Each migration its own transaction; many of them in one round trip.
                self._with_retries(self._units([[x] for x in group]))
                i += len(group)
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
                self._with_retries(self._units([list(batch)]))
                batch = []
            if m is not None:
                self._run_nontransactional(m)

    def _units(self, units: list[list[Migration]]) -> Callable[[], None]:
        """Runs the transactions not committed yet: a retry after a lock timeout starts at the
        migration that timed out, never again at one that committed."""
        todo = list(units)

        def run() -> None:
            try:
                self._run_transactional(list(todo))
            finally:
                done = {a.id for a in self.applied}
                todo[:] = [u for u in todo if u[-1].id not in done]
        return run

    def _with_retries(self, run: Callable[[], None]) -> None:
        attempt = 0
        while True:
            try:
                run()
                return
            except _LockTimeoutHit as hit:
                # Migrations committed before the one that timed out do not use up its retries.
                attempt = 1 if hit.progressed else attempt + 1
                if attempt > self.settings.lock_retries:
                    raise hit.failure from None
                wait = min(30.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                self.log.warning(
                    "migration.lock_timeout_retry", migration=hit.failure.details["migration"],
                    attempt=attempt, of=self.settings.lock_retries, retry_in_s=round(wait, 2),
                    lock_timeout_s=self.settings.lock_timeout, blockers=hit.blockers,
                )
                self.sleep(wait)

    def _run_transactional(self, units: list[list[Migration]]) -> None:
        if all(_pipelinable(m) for unit in units for m in unit):
            self._pipelined(units)
            return
        for unit in units:  # a body the grammar could not split, a Python migration
            durations = self._step_by_step(unit)
            for m in unit:
                self._applied(m, durations[m.id])

    def _applied(self, m: Migration, duration: float) -> None:
        self.applied.append(Applied(m.id, duration, True))
        self.log.info("migration.applied", migration=m.id, duration_s=round(duration, 3))

    def _pipelined(self, units: list[list[Migration]]) -> None:
        """Transactions (``units``: each one migration, or with MIGRATE_TX_MODE=all several)
        in one pipeline (job/pgpipe.py): ``BEGIN``, each migration's statements, its verify
        script and its tracking record, ``COMMIT``, the next transaction. Each answer is
        handled as it arrives: a migration is logged applied when its COMMIT is confirmed,
        the next one started. The first error stops everything after it (the server skips
        the rest of the pipeline); the failure names the migration, file:line and SQLSTATE
        as if its statement had run alone. A transaction whose verify script must be read
        before it may commit (only ever the last one) is committed by the client."""
        import psycopg

        from job.pgpipe import Pipe

        check_last = any(m.verify_steps() for m in units[-1])
        run = _PipelineRun(units)
        with signals.critical():  # a signal cancels the statement and lets the answers in
            pipe = Pipe(self.conn)
            try:
                for u, unit in enumerate(units):
                    run.send(pipe, b"BEGIN", "begin", unit[0], None, u)
                    for m in unit:
                        if len(unit) > 1:  # the server measures each migration from here
                            run.send(pipe, _STARTED, "started", m, None, u)
                        for step in (*m.exec_steps(), *m.verify_steps()):
                            run.send(pipe, str(step.apply).encode(), "step", m, step, u)
                        run.send(pipe, _RECORD, "record", m, None, u, tracking.record_values(
                            self.settings, m, operation="apply", how="applied"))
                        if m is not unit[-1]:
                            pipe.flush_request()  # the next migration's start, as it starts
                    if u < len(units) - 1 or not check_last:
                        run.send(pipe, b"COMMIT", "commit", unit[-1], None, u)
                        pipe.flush_request()
                self._log_start(units[0][0])
                try:
                    for res in pipe.results():
                        self._on_result(run, pipe, res)
                except psycopg.Error as exc:  # the socket failed before every answer came
                    if run.failure is None:
                        run.fail(self, exc, run.cmds[min(run.n, len(run.cmds) - 1)])
                finally:
                    if self.watcher:
                        self.watcher.end()
                if run.failure is not None:
                    self._rollback_quietly()
                    if pipe.cancelled:
                        return  # our cancel, on a signal: critical() raises Interrupted
                    if run.lock_hit:
                        raise _LockTimeoutHit(run.failure, run.failure.details.get(
                            "blockers") or [], progressed=run.committed > 0)
                    raise run.failure
                if check_last:
                    for m, step, res in run.checks:
                        self._check_verify_result(m, step, _Answer(res))
                    self._commit(units[-1])
                    for x in units[-1]:
                        self._applied(x, run.durations[x.id])
            except BaseException:
                self._rollback_quietly()
                raise

    def _on_result(self, run: _PipelineRun, pipe: Any, res: Any) -> None:
        from job.pgpipe import result_ok

        cmd = run.cmds[run.n]
        run.n += 1
        if run.failure is not None:
            return  # skipped by the server after the failure (PIPELINE_ABORTED)
        if not result_ok(pipe, res):
            run.fail(self, pipe.error(res), cmd)
            return
        kind, m, step, u = cmd
        if kind == "record":
            run.durations[m.id] = (_int(res.get_value(0, 0)) or 0) / 1000
        elif kind == "step" and step is not None and step.verify:
            run.checks.append((m, step, res))
        elif kind == "commit":
            run.committed += 1
            for x in run.units[u]:
                self._applied(x, run.durations[x.id])
        if run.n < len(run.cmds) and kind in ("record", "commit"):
            nxt = run.cmds[run.n]
            if nxt[1] is not m and nxt[0] != "commit":
                self._log_start(nxt[1])

    def _log_start(self, m: Migration) -> None:
        # The answers of a migration arrive together (one Flush per migration): the watcher
        # learns which migration runs, and the heartbeat reads the statement from the server.
        self.log.info("migration.start", migration=m.id, transactional=True)
        if self.watcher:
            self.watcher.begin(m.id)

    def _step_by_step(self, ms: list[Migration]) -> dict[str, float]:
        import psycopg

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
                try:
                    self.cur.execute(tracking.RECORD_SQL, tracking.record_params(
                        self.settings, m, operation="apply", how="applied",
                        duration_ms=int(durations[m.id] * 1000)))
                except psycopg.Error as exc:
                    raise self._failure(m, None, exc, batch=ms) from None
            self._commit(ms)
        except BaseException:
            self._rollback_quietly()
            raise
        return durations

    def _run_nontransactional(self, m: Migration) -> None:
        """Statement by statement in autocommit. Every index the migration builds must be valid
        before it is recorded; an INVALID leftover of an interrupted build of the same statement
        is dropped first so the statement rebuilds it (``IF NOT EXISTS`` would skip it)."""
        import psycopg

        self.log.info("migration.start", migration=m.id, transactional=False)
        started = time.monotonic()
        executed: list[str] = []
        plan = [(step, indexes.step_builds(step)) for step in m.exec_steps()]
        builds = [b for _, bs in plan for b in bs]
        current: Step | None = None
        dropped: list[str] = []
        try:
            self._autocommit(True)
            before = indexes.index_oids(self.conn, builds) if builds else {}
            for step, step_builds in plan:
                current = step
                # Nothing of a statement that timed out waiting for its lock ran, so retrying
                # just that statement is safe (the earlier ones are already committed); a
                # cancelled index build left an INVALID index, which the retry drops first.
                self._with_retries(functools.partial(
                    self._exec_building, m, step, step_builds, executed, dropped))
                if isinstance(step.apply, str):
                    executed.append(step.describe())
            current = None
            if builds:
                self._check_builds(m, builds, before, executed, dropped)
        except MigrationFailed:
            raise
        except _LockTimeoutHit:
            raise
        except psycopg.Error as exc:
            # Raised outside a statement (catalog checks, switching to autocommit): most
            # likely the connection went away.
            raise self._failure(m, current, exc, executed=executed) from None
        except Interrupted as exc:
            exc.details = self._interrupted_report(m, executed, current, builds)
            raise
        finally:
            # Never let this cleanup mask the real error (it raises on a lost connection).
            with contextlib.suppress(Exception):
                self._autocommit(False)
        duration = time.monotonic() - started
        try:
            # The verify script and the record commit together: a migration that fails its
            # verification stays unrecorded (a rerun applies its idempotent statements again).
            for step in m.verify_steps():
                self._verify_nontransactional(m, step, executed)
            try:
                self.cur.execute(tracking.RECORD_SQL, tracking.record_params(
                    self.settings, m, operation="apply", how="applied",
                    duration_ms=int(duration * 1000)))
            except psycopg.Error as exc:
                raise self._failure(m, None, exc, executed=executed) from None
            self._commit([m], executed=executed)
        except BaseException:
            self._rollback_quietly()
            raise
        self.applied.append(Applied(m.id, duration, False))
        self.log.info("migration.applied", migration=m.id, duration_s=round(duration, 3))

    def _exec_building(self, m: Migration, step: Step, builds: list[indexes.Build],
                       executed: list[str], dropped: list[str]) -> None:
        for b in builds:
            if b.kind == "create" and b.name:
                self._drop_invalid_leftover(m, step, b, executed, dropped)
        self._exec(m, step, executed=executed)

    def _drop_invalid_leftover(self, m: Migration, step: Step, b: indexes.Build,
                               executed: list[str], dropped: list[str]) -> None:
        import psycopg

        hit = indexes.find(self.conn, b)
        if hit is None or hit[2]:
            return
        oid, name, _ = hit
        deadline = time.monotonic() + max(self.settings.lock_wait, 1.0)
        pid = indexes.wait_for_build(self.conn, oid, deadline, self.log)
        if pid is not None:
            raise self._index_failure(
                m, step, executed, [name],
                f"INVALID index {name} that {m.id} builds is still being built by another "
                f"session (pid {pid}) after {self.settings.lock_wait:g}s (MIGRATE_LOCK_WAIT)")
        hit = indexes.find(self.conn, b)
        if hit is None or hit[2]:
            return  # that session finished it: valid now
        self.log.warning("index.invalid_dropped", migration=m.id, index=name,
                         reason="INVALID index left by an interrupted build of this "
                                "migration; dropping it (DROP INDEX CONCURRENTLY) so the "
                                "migration rebuilds it")
        if self.watcher:
            self.watcher.begin()
        try:
            indexes.drop(self.conn, name)
        except psycopg.Error as exc:
            blockers = self.watcher.blockers if self.watcher else []
            failure = self._index_failure(
                m, step, executed, [name],
                f"cannot drop INVALID index {name} (left by an interrupted build of {m.id}) to "
                f"rebuild it: [{exc.sqlstate}] {redact.scrub(str(exc).strip())}",
                sqlstate=exc.sqlstate, blockers=blockers)
            if exc.sqlstate == LOCK_NOT_AVAILABLE:
                raise _LockTimeoutHit(failure, blockers) from None
            raise failure from None
        finally:
            if self.watcher:
                self.watcher.end()
        if name not in dropped:
            dropped.append(name)

    def _check_builds(self, m: Migration, builds: list[indexes.Build],
                      before: dict[str, set[int]], executed: list[str],
                      dropped: list[str]) -> None:
        """After the statements: a migration is recorded only when its indexes are valid."""
        import psycopg

        bad = []
        for b in builds:
            hit = indexes.find(self.conn, b) if b.kind == "create" else None
            if hit is not None and not hit[2]:
                bad.append(hit[1])
        orphans, others = indexes.orphans_after(self.conn, builds, before)
        for ix, reason in orphans:
            self.log.warning("index.invalid_dropped", migration=m.id, index=ix.index,
                             reason=f"INVALID index {reason}")
            try:
                indexes.drop(self.conn, ix.index)
            except psycopg.Error as exc:
                self.log.error("index.drop_failed", index=ix.index,
                               error=redact.scrub(str(exc).strip()))
                bad.append(ix.index)
        if bad:
            raise self._index_failure(
                m, None, executed, bad,
                f"migration {m.id} left INVALID index(es) {', '.join(bad)}: an INVALID index is "
                "never used by the planner and is not success, so the migration was not recorded")
        for ix in others:
            self.log.warning("index.invalid_on_table", migration=m.id, index=ix.index,
                             table=ix.table, being_built_by_pid=ix.building_pid,
                             reason="an INVALID index this migration did not build is on a "
                                    "table it touches", fix=f"DROP INDEX CONCURRENTLY {ix.index}")
        for name in dropped:
            self.rebuilt.append({"index": name, "migration": m.id})
            self.log.info("index.rebuilt", migration=m.id, index=name, valid=True)

    def _index_failure(self, m: Migration, step: Step | None, executed: list[str],
                       names: list[str], text: str, *, sqlstate: str | None = None,
                       blockers: list[dict[str, Any]] | None = None) -> MigrationFailed:
        text += (f" ({len(executed)} statement(s) of this non-transactional migration stayed "
                 f"applied; INVALID index(es): {', '.join(names)} — the next run drops and "
                 "rebuilds them)")
        details: dict[str, Any] = {
            "migration": m.id, "file": m.path, "line": step.line if step else None,
            "sqlstate": sqlstate, "statement": step.describe() if step else None,
            "executed_statements": list(executed), "invalid_indexes": names}
        if blockers:
            details["blockers"] = blockers
        return MigrationFailed(text, **details)

    def _interrupted_report(self, m: Migration, executed: list[str], current: Step | None,
                            builds: list[indexes.Build]) -> dict[str, Any]:
        """What a signal left of a non-transactional migration, for the summary (bounded: a
        few catalog lookups on the connection whose statement psycopg just cancelled)."""
        invalid: list[str] = []
        with contextlib.suppress(Exception):
            for b in builds:
                hit = indexes.find(self.conn, b) if b.kind == "create" else None
                if hit is not None and not hit[2]:
                    invalid.append(hit[1])
        return {"migration": m.id, "file": m.path, "transactional": False,
                "line": current.line if current else None,
                "statement": current.describe() if current else None,
                "executed_statements": list(executed), "invalid_indexes": invalid}

    def _commit(self, ms: Sequence[Migration], executed: list[str] | None = None) -> None:
        import psycopg

        try:
            with signals.critical():
                self.conn.commit()
        except psycopg.Error as exc:
            ids = ", ".join(m.id for m in ms)
            lost = self._lost(exc)
            text = (f"{'connection lost' if lost else 'COMMIT failed'} while committing {ids}: "
                    f"{redact.scrub(str(exc).strip())}. ")
            text += ("Whether the commit reached the server is unknown to this run; each "
                     "migration commits together with its tracking record, so the next run sees "
                     "exactly which were applied." if lost else "Nothing of it was committed.")
            raise MigrationFailed(text, migration=ms[0].id, file=ms[0].path,
                                  sqlstate=exc.sqlstate, connection_lost=lost,
                                  executed_statements=executed) from None

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
        import psycopg

        try:
            if not m.transactional:
                self._autocommit(True)
            run_steps()
            self._autocommit(False)
            try:
                self.cur.execute(record_sql, tracking.record_params(
                    self.settings, m, operation=operation, how=how))
            except psycopg.Error as exc:
                raise self._failure(m, None, exc, rollback=operation == "rollback") from None
            self._commit([m])
        except BaseException:
            self._rollback_quietly()
            with contextlib.suppress(Exception):  # never mask the real error
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

    def _failure(self, m: Migration, step: Step | None, exc: Any, *,
                 executed: list[str] | None = None,
                 blockers: list[dict[str, Any]] | None = None, rollback: bool = False,
                 batch: Sequence[Migration] | None = None) -> MigrationFailed:
        """The operator's message for a failed statement, tracking record or lost connection.
        ``step`` is None when the failure is not one of the migration's own statements."""
        diag = exc.diag
        path = m.rollback_path if rollback else ((step.path if step else None) or m.path)
        if step is None:
            line = None
        elif rollback:
            line = step.rollback_line
        else:
            line = line_of_error(step, _int(diag.statement_position))
        where = f"{path}:{line}" if line else path
        primary = redact.scrub(diag.message_primary or str(exc).strip())
        detail = redact.scrub(diag.message_detail) if diag.message_detail else None
        hint = redact.scrub(diag.message_hint) if diag.message_hint else None
        verb = ("rollback of" if rollback else "verify script of migration"
                if step is not None and step.verify else "migration")
        lost = self._lost(exc)
        transactional = executed is None
        others = [x.id for x in (batch or []) if x is not m]
        if lost:
            text = f"connection lost during {verb} {m.id} at {where}: {primary}".replace(
                "during migration ", "during ")
            if transactional and rollback:
                text += "; the server rolled the rollback back: the migration stays applied"
            elif transactional:
                text += ("; the server rolled the migration back" if not others else
                         f"; the server rolled back this transaction ({m.id}, "
                         f"{', '.join(others)}): none of them was applied")
        elif step is None and exc.sqlstate == UNIQUE_VIOLATION and _on_tracking_table(diag):
            text = (f"{verb} {m.id} could not be recorded: [{exc.sqlstate}] {primary} — another "
                    "tool (a yoyo CLI or an old migrate-job that does not take yoyo's lock) "
                    "recorded it at the same time")
            if transactional:
                text += "; this run rolled it back, so it is applied exactly once"
        elif step is None:
            text = (f"{verb} {m.id} failed while recording it in the tracking tables: "
                    f"[{exc.sqlstate}] {primary}")
            if transactional:
                text += "; it was rolled back"
        else:
            text = f"{verb} {m.id} failed at {where}: [{exc.sqlstate}] {primary}"
        if detail:
            text += f" DETAIL: {detail}"
        if hint:
            text += f" HINT: {hint}"
        details: dict[str, Any] = {
            "migration": m.id, "file": path, "line": line, "sqlstate": exc.sqlstate,
            "server_message": primary, "detail": detail, "hint": hint,
            "statement": step.describe() if step is not None and not rollback else None,
        }
        if lost:
            details["connection_lost"] = True
        if others:
            details["rolled_back_with"] = others
        if blockers:
            details["blockers"] = blockers
        if executed is not None:
            # Non-transactional: these statements stay applied; say so exactly.
            details["executed_statements"] = list(executed)
            if step is None:
                details["invalid_indexes"] = []
                text += (f" (non-transactional: all {len(executed)} statement(s) completed, but "
                         "the migration was not recorded: the next run runs them again, so keep "
                         "them idempotent)" if executed else
                         " (non-transactional: none of its statements had run)")
            elif lost:
                # The server is gone: name what the statement in flight may have left.
                in_flight = [b for b in indexes.step_builds(step) if b.name]
                details["invalid_indexes"] = []
                details["possibly_invalid_indexes"] = [b.name for b in in_flight]
                text += (f" (non-transactional: {len(executed)} earlier statement(s) completed"
                         + (": " + "; ".join(executed) if executed else ""))
                text += (f"; the statement in flight ({step.describe()}) may or may not have "
                         "completed")
                if in_flight:
                    text += ("; it may have left INVALID index(es) "
                             + ", ".join(b.name or "" for b in in_flight)
                             + " — the next run drops and rebuilds them")
                text += ")"
            else:
                details["invalid_indexes"] = self._invalid_indexes()
                text += (f" ({len(executed)} earlier statement(s) of this non-transactional "
                         "migration stayed applied")
                if details["invalid_indexes"]:
                    text += "; INVALID index(es) left behind: " + ", ".join(
                        details["invalid_indexes"]) + " (the next run drops and rebuilds an "\
                        "INVALID index its migration builds)"
                text += ")"
        return MigrationFailed(text, **details)

    @staticmethod
    def _lost(exc: Any) -> bool:
        """The server or the connection went away (restart, failover, terminated backend)."""
        import psycopg

        state = getattr(exc, "sqlstate", None) or ""
        if state.startswith(("08", "57P")):
            return True
        return isinstance(exc, psycopg.OperationalError) and not state

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
    def __init__(self, failure: MigrationFailed, blockers: list[dict[str, Any]], *,
                 progressed: bool = False) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.blockers = blockers
        self.progressed = progressed  # migrations committed before this one (same pipeline)


# The tracking record and the per-migration start marker, as the pipeline sends them.
_RECORD = tracking.positional(tracking.RECORD_SQL, tracking.RECORD_FIELDS)
_STARTED = tracking.STARTED_SQL.encode()
# A pipeline carries at most this many migrations or this much SQL: the answers of one
# round trip are read as they come, so this only bounds the client's memory.
GROUP_MIGRATIONS = 200
GROUP_BYTES = 4 * 1024 * 1024

_Cmd = tuple[str, Migration, Step | None, int]  # (kind, migration, step, unit index)


def _pipelinable(m: Migration) -> bool:
    """Every step one statement of text, sent as is (no savepoint for ignored errors)."""
    return m.transactional and all(
        s.single and isinstance(s.apply, str) and not s.ignore_errors
        for s in (*m.exec_steps(), *m.verify_steps()))


def _group(pending: Sequence[Migration], i: int) -> list[Migration]:
    """Consecutive transactional migrations from ``pending[i]`` that can share a pipeline;
    one whose verify script is read before its COMMIT ends the group."""
    group = [pending[i]]
    if not _pipelinable(pending[i]) or pending[i].verify_steps():
        return group
    size = sum(len(str(s.apply)) for s in pending[i].exec_steps())
    for m in pending[i + 1:]:
        if not m.transactional or not _pipelinable(m) or len(group) >= GROUP_MIGRATIONS:
            break
        size += sum(len(str(s.apply)) for s in m.exec_steps())
        if size > GROUP_BYTES:
            break
        group.append(m)
        if m.verify_steps():
            break
    return group


class _PipelineRun:
    """What one pipeline sent and what its answers said so far."""

    def __init__(self, units: list[list[Migration]]) -> None:
        self.units = units
        self.cmds: list[_Cmd] = []
        self.n = 0  # answers read
        self.durations: dict[str, float] = {}
        self.checks: list[tuple[Migration, Step, Any]] = []
        self.committed = 0
        self.failure: MigrationFailed | None = None
        self.lock_hit = False

    def send(self, pipe: Any, sql: bytes, kind: str, m: Migration, step: Step | None, u: int,
             params: list[bytes | None] | None = None) -> None:
        pipe.send(sql, params)
        self.cmds.append((kind, m, step, u))

    def fail(self, applier: Applier, exc: Any, cmd: _Cmd) -> None:
        """The failure of one command, reported as if its statement had run alone."""
        kind, m, step, u = cmd
        blockers = applier.watcher.blockers if applier.watcher else []
        unit = self.units[u]
        failure = applier._failure(m, step if kind == "step" else None, exc, blockers=blockers,
                                   batch=unit if len(unit) > 1 else None)
        later = [x.id for v in self.units[u + 1:] for x in v]
        if applier._lost(exc) and not (exc.sqlstate or "").startswith("57P") and (
                later or kind in ("record", "commit")):
            # The socket failed with more already sent: unlike a terminated backend, a live
            # server may still run what it received. Say exactly what is unknown.
            failure.message += (
                "; its COMMIT" + (f" and the migrations sent after it ({', '.join(later)})"
                                  if later else "")
                + " had already been sent: whether they were applied is unknown to this run. "
                "Each commits together with its tracking record, so the next run sees exactly "
                "which were")
            failure.details["possibly_applied"] = [x.id for x in unit] + later
        self.failure = failure
        self.lock_hit = exc.sqlstate == LOCK_NOT_AVAILABLE and kind == "step"


class _Answer:
    """A verify query's answer (a libpq result) read the way a cursor would be."""

    def __init__(self, res: Any) -> None:
        self.res = res
        from psycopg import pq

        self.description = True if res.status == pq.ExecStatus.TUPLES_OK else None

    def fetchone(self) -> tuple[Any, ...] | None:
        if self.res.ntuples == 0 or self.res.nfields == 0:
            return None
        value = self.res.get_value(0, 0)
        if value is not None and self.res.ftype(0) == 16:  # boolean
            return (value == b"t",)
        return (value,)


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


def _on_tracking_table(diag: Any) -> bool:
    names = " ".join(str(x) for x in (diag.table_name, diag.constraint_name) if x)
    return any(t in names for t in TRACKING_TABLES)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
