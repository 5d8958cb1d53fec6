"""Commands other than the pipeline: new, rollback, mark, unmark, accept-changes, backup,
restore, demo. Each is a short function over a ``Context``; none reads argv or the environment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job import migrations, tracking
from job.errors import ConfigError, IntegrityRefusal
from job.pipeline import make_plan

if TYPE_CHECKING:
    from job.migrations import MigrationSet
    from job.pipeline import Plan
    from job.runtime import Context
    from job.settings import Settings


# -- new ---------------------------------------------------------------------------------------
def new(settings: Settings, name: str, now: datetime | None = None) -> list[Path]:
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
                      if not p.name.endswith(".rollback.sql")
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
        "--      approves a destructive finding of `migrate-job plan` after review\n\n"
    )
    rollback_path.write_text(f"-- rollback of {mid}: undo the statements of {apply_path.name} "
                             "in reverse order\n\n")
    return [apply_path, rollback_path]


# -- rollback ------------------------------------------------------------------------------------
def rollback(ctx: Context, count: int | None, to: str | None) -> None:
    from job.applier import Applier

    found, plan = _locked_plan(ctx)
    _refuse_changed(plan.integrity.changed)
    applied_ids = [r.id for r in plan.state.applied]
    if to is not None:
        if to not in applied_ids:
            raise ConfigError(f"--to {to}: not an applied migration")
        targets = applied_ids[applied_ids.index(to) + 1:]
    else:
        targets = applied_ids[-(count or 1):] if applied_ids else []
    targets = list(reversed(targets))
    if not targets:
        ctx.log.info("rollback.nothing_to_do")
        return
    known = found.by_id()
    missing = [t for t in targets if t not in known]
    if missing:
        raise ConfigError(f"cannot roll back {', '.join(missing)}: not in this image's "
                          "migrations directory")
    to_roll = [known[t] for t in targets]
    # Check every rollback script before touching anything.
    without = [m for m in to_roll if not m.has_rollback]
    if without:
        raise ConfigError(
            "nothing rolled back: no rollback script for "
            + ", ".join(f"{m.id} ({m.rollback_path} missing or empty)" for m in without))
    applier = Applier(ctx.connect_migration(), ctx.settings, ctx.log)
    rolled: list[dict[str, Any]] = []
    try:
        for m in to_roll:
            duration = applier.rollback(m)
            rolled.append({"id": m.id, "duration_s": round(duration, 3)})
    finally:
        ctx.summary.extra["rolled_back"] = rolled


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
