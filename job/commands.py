"""Commands other than the pipeline: new, rollback, mark, unmark, accept-changes,
accept-schema, stamp-environment, backup, restore, demo. Each is a short function over a
``Context``; none reads argv or the environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from job import migrations, tracking
from job.errors import ConfigError, IntegrityRefusal
from job.pipeline import make_plan

if TYPE_CHECKING:
    from job.migrations import MigrationSet
    from job.pipeline import Plan
    from job.runtime import Confirm, Context
    from job.settings import Settings


# -- new ---------------------------------------------------------------------------------------
def new(settings: Settings, name: str, now: datetime | None = None, verify: bool = False
        ) -> list[Path]:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise ConfigError(f"migration name {name!r} has no letters or digits")
    directory = Path(settings.migrations_dir)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    mid = f"{stamp}_{slug}"
    apply_path, rollback_path = directory / f"{mid}.sql", directory / f"{mid}.rollback.sql"
    if apply_path.exists():
        raise ConfigError(f"{apply_path} already exists")
    previous = sorted(p.stem for p in directory.glob("*.sql")
                      if not p.name.endswith((".rollback.sql", migrations.VERIFY_SUFFIX))
                      and not p.name.startswith("post-apply"))
    depends = f"-- depends: {previous[-1]}\n" if previous else ""
    apply_path.write_text(
        f"-- {name}\n{depends}"
        "--\n"
        "-- Runs in one transaction together with its tracking rows. Directives (remove the\n"
        "-- first two dashes to use one; they must stay above the first statement):\n"
        "-- -- transactional: false\n"
        "--      for CREATE INDEX CONCURRENTLY and other statements that cannot run in a\n"
        "--      transaction; keep each statement idempotent (IF NOT EXISTS)\n"
        "-- -- migrate-job: approve DL02 \"why this destructive change is safe\"\n"
        "--      approves a destructive finding of `migrate-job plan` after review\n"
        "-- -- phase: post\n"
        "--      a contract step (drop what the old version used): applied by `run --phase "
        "post`,\n"
        "--      after the new version is live (docs/rollout.md)\n\n"
    )
    rollback_path.write_text(f"-- rollback of {mid}: undo the statements of {apply_path.name} "
                             "in reverse order.\n"
                             "-- If undoing it only means forgetting the record, make the next "
                             "line the directive:\n"
                             "-- -- rollback: nothing to undo\n\n")
    if not verify:
        return [apply_path, rollback_path]
    verify_path = directory / f"{mid}{migrations.VERIFY_SUFFIX}"
    verify_path.write_text(
        f"-- verify {mid}: runs right after {apply_path.name}, in the same transaction.\n"
        "-- Each query's first column of its first row must be true; false, NULL, no row or\n"
        "-- an error fails the migration (rolled back, exit 8). Only read here: a write is\n"
        "-- refused by the safety gate (VF01). For example:\n"
        "--   SELECT count(*) = 0 FROM orders WHERE customer_id IS NULL;\n"
        "--   SELECT to_regclass('public.orders_customer_id_idx') IS NOT NULL;\n\n")
    return [apply_path, rollback_path, verify_path]


# -- rollback ------------------------------------------------------------------------------------
def rollback(ctx: Context, count: int | None, to: str | None, confirm: Confirm) -> None:
    """The last ``count`` (default 1) applied migrations, or those after ``to``, newest first,
    through the pre-flighted path of job/rollback.py."""
    from job.rollback import run_chain

    confirm.check_possible("rollback")
    if count is not None and count < 1:
        raise ConfigError(f"--count {count}: must be at least 1")
    found, plan = _locked_plan(ctx)
    _refuse_changed(plan.integrity.changed)
    applied_ids = [r.id for r in plan.state.applied]
    if to is not None:
        if to not in applied_ids:
            raise ConfigError(f"--to {to}: not an applied migration")
        targets = applied_ids[applied_ids.index(to) + 1:]
    elif count is not None and count > len(applied_ids):
        raise ConfigError(f"--count {count}: only {len(applied_ids)} migration(s) are applied; "
                          "nothing rolled back")
    else:
        targets = applied_ids[-(count or 1):] if applied_ids else []
    targets = list(reversed(targets))
    if not targets:
        ctx.log.info("rollback.nothing_to_do")
        ctx.summary.extra["rolled_back"] = []
        return
    known = found.by_id()
    missing = [t for t in targets if t not in known]
    if missing:
        raise ConfigError(f"nothing rolled back: cannot roll back {', '.join(missing)}: not in "
                          "this image's migrations directory")
    run_chain(ctx, plan, [known[t] for t in targets], confirm,
              title=f"roll back {len(targets)} migration(s) on {ctx.summary.database}")


# -- mark / unmark / accept-changes ------------------------------------------------------------
def mark(ctx: Context, ids: Sequence[str]) -> None:
    found = migrations.read(ctx.settings.migrations_dir)
    known = found.by_id()
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ConfigError(f"unknown migration id(s): {', '.join(unknown)}")
    conn = ctx.connect_admin()
    ctx.take_lock()
    with ctx.lock_mutex:
        tracking.ensure_tables(conn)
        applied = tracking.read_state(conn).ids()
        todo = [known[i] for i in ids if i not in applied]
        with conn.transaction():
            for m in todo:
                conn.execute(tracking.RECORD_SQL, tracking.record_params(
                    ctx.settings, m, operation="mark", how="marked"))
    for i in ids:
        ctx.log.info("mark.done" if i in {m.id for m in todo} else "mark.already_applied",
                     migration=i)
    ctx.summary.extra["marked"] = [m.id for m in todo]
    _record_schema(ctx, f"mark {' '.join(m.id for m in todo)}")


def unmark(ctx: Context, ids: Sequence[str]) -> None:
    conn = ctx.connect_admin()
    ctx.take_lock()
    with ctx.lock_mutex:
        tracking.ensure_tables(conn)
        state = tracking.read_state(conn)
        applied = state.ids()
        missing = [i for i in ids if i not in applied]
        if missing:
            raise ConfigError(f"not applied, nothing to unmark: {', '.join(missing)}")
        with conn.transaction():
            for i in ids:
                conn.execute(tracking.FORGET_SQL, {
                    **tracking.record_params(ctx.settings, _Named(i), operation="unmark",
                                             how="unmarked")})
    ctx.log.info("unmark.done", migrations=list(ids))
    ctx.summary.extra["unmarked"] = list(ids)
    _record_schema(ctx, f"unmark {' '.join(ids)}")


def accept_changes(ctx: Context, ids: Sequence[str]) -> None:
    found, plan = _locked_plan(ctx)
    conn = ctx.lock_conn
    assert conn is not None
    with ctx.lock_mutex:
        changed = {i for i, _ in plan.integrity.changed}
        not_changed = [i for i in ids if i not in changed]
        if not_changed:
            raise ConfigError(f"not an applied migration with a changed file: "
                              f"{', '.join(not_changed)}")
        known = found.by_id()
        with conn.transaction():
            for i in ids:
                m = known[i]
                conn.execute(
                    "UPDATE _migrate_job_migration SET checksum = %s, recorded_at_utc = %s, "
                    "recorded_by = %s, how = 'accepted' WHERE migration_id = %s",
                    (m.checksum, tracking.now_utc(), ctx.settings.user, i))
                conn.execute(tracking.LOG_ONLY_SQL, tracking.record_params(
                    ctx.settings, m, operation="mark", how="accepted",
                    comment=f"accept-changes: checksum {m.checksum[:12]}"))
    ctx.log.info("accept_changes.done", migrations=list(ids))
    ctx.summary.extra["accepted"] = list(ids)
    # The schema and the applied set are unchanged: the schema record stays as it is (writing
    # one here would quietly absorb any drift into an unrelated review).


# -- accept-schema / stamp-environment -----------------------------------------------------------
def accept_schema(ctx: Context, confirm: Callable[[str], None]) -> None:
    """Record the current schema as the expected one, after reviewing an out-of-band change.
    ``confirm`` is asked with the list of what will be accepted (on a TTY without --yes)."""
    from job import drift

    conn = ctx.connect_admin()
    ctx.take_lock()
    with ctx.lock_mutex:
        verdict = drift.inspect(conn, ctx.settings)
    accepted = verdict.texts()
    if verdict.state == "clean" and verdict.recorded is not None and sorted(
            verdict.recorded.schemas) == (verdict.snapshot.schemas if verdict.snapshot else []):
        ctx.log.info("accept_schema.nothing_to_accept",
                     message="the schema is as recorded; nothing to accept")
        ctx.summary.extra["accepted_schema_changes"] = []
        return
    what = (f"accept-schema on {ctx.summary.database}: record the current schema of "
            f"{', '.join(verdict.snapshot.schemas if verdict.snapshot else [])} as expected")
    if accepted:
        what += " (" + "; ".join(accepted[:20]) + ")"
    confirm(what)
    with ctx.lock_mutex:
        drift.record(conn, ctx.settings, ctx.log, "accept-schema", run_id=ctx.run_id)
    ctx.log.info("accept_schema.done", changes=accepted, count=len(verdict.changes),
                 previous_state=verdict.state)
    ctx.summary.extra["accepted_schema_changes"] = accepted


def stamp_environment(ctx: Context, name: str, confirm: Callable[[str], None]) -> None:
    """Set the database's environment stamp (the guard refuses writing runs of another name)."""
    from job import envguard

    conn = ctx.connect_admin()
    ctx.take_lock()
    with ctx.lock_mutex:
        current = envguard.read(conn)
    if current is not None and current.name == name:
        ctx.log.info("environment.unchanged", environment=name)
        ctx.summary.extra["environment"] = name
        return
    confirm(f"stamp-environment on {ctx.summary.database}: change the environment stamp from "
            f"{repr(current.name) if current else 'none'} to {name!r}")
    with ctx.lock_mutex:
        previous = envguard.write(conn, ctx.settings, name)
    ctx.log.warning("environment.restamped", environment=name, previous=previous,
                    message=f"this database is now stamped '{name}' (was "
                            f"{repr(previous) if previous else 'unstamped'})")
    ctx.summary.extra["environment"] = name
    ctx.summary.extra["previous_environment"] = previous


def _record_schema(ctx: Context, reason: str) -> None:
    from job import drift

    with ctx.lock_mutex:
        drift.record_quietly(ctx.lock_conn, ctx.settings, ctx.log, reason, run_id=ctx.run_id)


def _locked_plan(ctx: Context) -> tuple[MigrationSet, Plan]:
    """Read the migrations, connect, take the lock and look at the database."""
    found = migrations.read(ctx.settings.migrations_dir)
    conn = ctx.connect_admin()
    ctx.take_lock()
    with ctx.lock_mutex:
        tracking.ensure_tables(conn)
        return found, make_plan(conn, found)


class _Named:
    """A migration known only by id (unmark works for ids this image does not have)."""

    def __init__(self, mid: str) -> None:
        self.id = mid
        self.hash = migrations.migration_hash(mid)
        self.checksum = ""


def _refuse_changed(changed: list[tuple[str, str]]) -> None:
    if changed:
        raise IntegrityRefusal("applied migration file(s) changed: " + ", ".join(
            f"{p} ({i})" for i, p in changed))


# -- backup / restore ----------------------------------------------------------------------------
def backup(ctx: Context) -> None:
    from job.backup import take_backup

    if ctx.settings.backup == "none":
        raise ConfigError("MIGRATE_BACKUP is none: set a target (file:///path, s3://bucket/prefix,"
                          " azblob://account/container/prefix) or pass --backup")
    conn = ctx.connect_admin()
    ctx.take_lock()
    with ctx.lock_mutex:
        state = tracking.read_state(conn)
        assert ctx.params is not None
        result = take_backup(ctx.settings, ctx.params, conn,
                             applied=[r.id for r in state.applied], pending=[], log=ctx.log)
    ctx.summary.backup = result.summary()


def restore(ctx: Context, uri: str) -> None:
    from job.backup import restore_backup

    ctx.connect_admin()
    # Not yoyo's lock: pg_restore --clean drops yoyo_lock, which would wait for our row forever.
    ctx.take_lock(yoyo=False)
    assert ctx.params is not None
    with ctx.lock_mutex:
        result = restore_backup(ctx.settings, ctx.params, uri, log=ctx.log)
    ctx.summary.extra["restored"] = result
