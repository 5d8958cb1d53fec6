"""`undo [RUN_ID] [--restore]`: revert exactly what one recorded run applied.

The run (default: the most recent one that applied something) is looked up in
``_migrate_job_run``. Its migrations are those it recorded, *still applied by it*: the
``_yoyo_migration`` row's time falls inside the run (a migration rolled back and re-applied by a
later run belongs to that later run). Undo refuses when anything was applied on top of them
since: that would have to be undone first, newest first. Then either:

- scripts (default): the run's migrations, newest first, through the pre-flighted rollback of
  job/rollback.py (every script checked before the first runs; a backup first when
  ``MIGRATE_BACKUP`` is set);
- ``--restore``: the backup that run took before it applied anything, checked against the
  sha256 the run recorded and against its manifest, restored with ``pg_restore``; the run
  history itself is kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from job import history, migrations, tracking
from job.errors import BackupError, ConfigError, VerificationFailed

if TYPE_CHECKING:
    from job.runtime import Confirm, Context


def undo(ctx: Context, run_ref: str | None, restore: bool, confirm: Confirm) -> None:
    from job.pipeline import make_plan

    confirm.check_possible("undo")
    found = None if restore else migrations.read(ctx.settings.migrations_dir)
    conn = ctx.connect_admin()
    # With --restore not yoyo's lock, as `restore`: pg_restore --clean drops yoyo_lock, which
    # would wait for our uncommitted row forever.
    ctx.take_lock(yoyo=not restore)
    with ctx.lock_mutex:
        tracking.ensure_tables(conn)
        runs = history.read_runs(conn)
        state = tracking.read_state(conn)
        plan = make_plan(conn, found) if found is not None else None
    run = pick(runs, run_ref)
    ctx.summary.extra["undoes"] = {
        "run_id": run["id"], "started_at_utc": history.as_json_run(run)["started_at_utc"],
        "command": run.get("command"), "user": run.get("username"), "image": run.get("image")}
    ctx.summary.extra["mode"] = "restore" if restore else "scripts"
    ours, later = split_applied(run, state, runs)
    if not ours:
        ctx.log.info("undo.nothing_to_undo", run=run["id"],
                     migrations=history.applied_ids(run),
                     reason="none of the migrations this run applied is still applied by it")
        ctx.summary.extra["rolled_back"] = []
        ctx.summary.outcome = "nothing_to_undo"
        return
    if later:
        raise ConfigError(_on_top_message(run, later), on_top=later)
    gone = [i for i in history.applied_ids(run) if i not in ours]
    heading = [f"undo {history.describe(run)}",
               f"it applied: {', '.join(history.applied_ids(run))}"
               + (f" (already undone: {', '.join(gone)})" if gone else "")]
    title = f"undo run {history.short(run['id'])} on {ctx.summary.database}"
    if restore:
        _restore(ctx, run, ours, confirm, title, heading)
        return
    assert found is not None and plan is not None
    if plan.integrity.changed:
        from job.commands import _refuse_changed

        _refuse_changed(plan.integrity.changed)
    known = found.by_id()
    missing = [i for i in ours if i not in known]
    if missing:
        raise ConfigError(
            f"nothing undone: {', '.join(missing)} not in this image's migrations directory, so "
            "their rollback scripts are unknown; run the image that applied them, or use "
            f"`migrate-job undo {history.short(run['id'])} --restore --yes` if that run took a "
            "backup")
    from job.rollback import run_chain

    run_chain(ctx, plan, [known[i] for i in ours], confirm, title=title, heading=heading)


def pick(runs: list[dict[str, Any]], ref: str | None) -> dict[str, Any]:
    """The run named by ``ref`` (a unique id prefix), or the newest one that applied something."""
    if ref is None:
        for run in runs:
            if history.applied_ids(run):
                return run
        raise ConfigError("no recorded run applied a migration: nothing to undo "
                          "(`migrate-job history` lists the runs)")
    ref = ref.strip().lower()
    if len(ref) < 4:
        raise ConfigError(f"run id {ref!r}: give at least 4 characters of it "
                          "(`migrate-job history` lists the runs)")
    matches = [r for r in runs if str(r["id"]).lower().startswith(ref)]
    if not matches:
        raise ConfigError(f"no recorded run {ref!r} in this database "
                          "(`migrate-job history` lists the runs)")
    if len(matches) > 1:
        raise ConfigError(f"run id {ref!r} is ambiguous: " + ", ".join(
            history.short(r["id"]) for r in matches[:5]) + "; give more characters")
    run = matches[0]
    if not history.applied_ids(run):
        raise ConfigError(f"{history.describe(run)} applied no migration: nothing to undo; "
                          "pick a run that did (`migrate-job history`)")
    return run


def split_applied(run: dict[str, Any], state: tracking.State, runs: list[dict[str, Any]]
                  ) -> tuple[list[str], list[dict[str, Any]]]:
    """(the run's migrations still applied by it, newest first; what sits on top of them)."""
    started: datetime | None = run.get("started")
    finished: datetime | None = run.get("finished")
    when = {r.id: r.applied_at for r in state.applied if r.applied_at is not None}
    ours = [i for i in history.applied_ids(run)
            if i in when and started is not None and started <= when[i]
            and (finished is None or when[i] <= finished)]
    ours.sort(key=lambda i: when[i], reverse=True)
    if not ours:
        return [], []
    oldest = min(when[i] for i in ours)
    later = []
    for r in state.applied:
        if r.id in ours or r.applied_at is None or r.applied_at <= oldest:
            continue
        by = _applied_by(r.id, r.applied_at, runs)
        later.append({"id": r.id, "applied_at_utc": r.applied_at.isoformat() + "Z",
                      "run": by["id"] if by else None,
                      "command": by.get("command") if by else None})
    return ours, later


def _applied_by(mid: str, at: datetime, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    for r in runs:
        if (mid in history.applied_ids(r) and r.get("started") is not None
                and r["started"] <= at and (r.get("finished") is None or at <= r["finished"])):
            return r
    return None


def _on_top_message(run: dict[str, Any], later: list[dict[str, Any]]) -> str:
    parts = []
    for item in later:
        if item["run"]:
            parts.append(f"{item['id']} (applied by run {history.short(item['run'])} at "
                         f"{item['applied_at_utc']})")
        else:
            parts.append(f"{item['id']} (recorded at {item['applied_at_utc']} outside a recorded "
                         "run: `mark` or the yoyo CLI)")
    runs = sorted({i["run"] for i in later if i["run"]})
    first = (f" `migrate-job undo {history.short(runs[-1])} --yes`" if len(runs) == 1 else "")
    return (f"nothing undone: {history.describe(run)} has later changes on top of its "
            f"migrations: {'; '.join(parts)}. Undoing it would leave them without what they "
            f"were built on: undo the later run(s) first, newest first{first}.")


def _restore(ctx: Context, run: dict[str, Any], ours: list[str], confirm: Confirm, title: str,
             heading: list[str]) -> None:
    from job.backup import restore_backup

    uri, sha = run.get("backup_uri"), run.get("backup_sha256")
    short = history.short(run["id"])
    if not uri:
        raise ConfigError(
            f"nothing undone: {history.describe(run)} took no backup (MIGRATE_BACKUP was none), "
            f"so there is nothing to restore. `migrate-job undo {short} --yes` reverts it with "
            "its rollback scripts instead.")
    assert ctx.params is not None and ctx.lock_conn is not None
    _check_backup(ctx, uri, sha)
    size = run.get("backup_bytes")
    lines = [*heading, f"database: {ctx.summary.database}",
             f"will RESTORE the backup that run took before applying anything: {uri}"
             + (f" ({size} bytes, sha256 {str(sha)[:12]}…)" if size else ""),
             f"migrations undone: {', '.join(ours)}",
             "the database returns to its state at that moment: every change since, application "
             "data included, is lost (the run history is kept)"]
    ctx.log.info("undo.plan", run=run["id"], mode="restore", uri=uri, migrations=ours)
    confirm(title, lines)
    with history.preserved(ctx.lock_conn, ctx.lock_mutex, ctx.log):
        result = restore_backup(ctx.settings, ctx.params, uri, log=ctx.log)
    ctx.summary.extra["restored"] = result
    ctx.summary.extra["rolled_back"] = [{"id": i} for i in ours]
    with ctx.lock_mutex:
        still = tracking.read_state(ctx.lock_conn).ids() & set(ours)
    if still:
        raise VerificationFailed(
            f"restored {uri}, yet {', '.join(sorted(still))} still recorded as applied: that "
            "backup was not taken before the run applied them", still_applied=sorted(still))


def _check_backup(ctx: Context, uri: str, sha: str | None) -> None:
    """The backup is the one the run took (sha256 as recorded) and of this database."""
    from job.backup import manifest as mf
    from job.backup.target import split_object_uri
    from job.backup.targets import open_target

    assert ctx.params is not None
    base, name = split_object_uri(uri)
    target = open_target(base, dict(ctx.settings.environ))
    manifest = mf.load(target, mf.manifest_name_for(name))
    if manifest is None:
        raise BackupError(f"{uri}: its manifest is missing; refusing to restore a backup that "
                          "cannot be verified")
    if sha and manifest.get("sha256") != sha:
        raise BackupError(f"{uri} is not the backup the run took: its manifest says sha256 "
                          f"{manifest.get('sha256')}, the run recorded {sha}; refusing to restore")
    key = mf.database_key(ctx.params)
    if manifest.get("database_key") not in (None, key):
        raise BackupError(f"{uri} is a backup of {manifest.get('database_key')}, not of {key}; "
                          "refusing to restore")
