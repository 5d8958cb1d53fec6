"""The deploy pipeline and its read-only views.

``run`` reads top to bottom as CONTRACT.md describes it: settings -> secrets -> wait for the
database -> lock -> environment check -> integrity -> schema drift -> plan -> safety gate ->
backup -> apply (+ verify scripts) -> verify -> report.
``status`` and ``plan`` share its first steps but never write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from job import migrations, tracking
from job.errors import (
    IntegrityRefusal,
    PendingMigrations,
    SafetyRefusal,
    VerificationFailed,
)

if TYPE_CHECKING:
    import psycopg

    from job.migrations import Migration, MigrationSet
    from job.runtime import Context


@dataclass
class Plan:
    migrations: MigrationSet
    state: tracking.State
    integrity: tracking.Integrity
    pending: list[Migration] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": [{"id": r.id, "applied_at_utc": r.applied_at.isoformat()
                         if r.applied_at else None, "checksum_recorded": r.checksum is not None}
                        for r in self.state.applied],
            "pending": [{"id": m.id, "file": m.path, "transactional": m.transactional,
                         "depends": sorted(m.depends), "statements": len(m.steps),
                         "has_rollback": m.has_rollback, "checksum": m.checksum,
                         "verify": m.verify_path}
                        for m in self.pending],
            "changed": [{"id": i, "file": p} for i, p in self.integrity.changed],
            "unknown": list(self.integrity.unknown),
            "unverified": [m.id for m in self.integrity.unverified],
            "post_apply": [m.id for m in self.migrations.post_apply],
        }


# -- run ---------------------------------------------------------------------------------------
def run(ctx: Context) -> None:
    settings, log = ctx.settings, ctx.log
    found = migrations.read(settings.migrations_dir)
    conn = ctx.connect_admin()
    ctx.take_lock()  # and the environment check (runtime.Context.take_lock)
    with ctx.lock_mutex:
        tracking.ensure_tables(conn)
        plan = make_plan(conn, found)
    refuse_on_integrity(ctx, plan)
    if plan.integrity.unverified:
        tracking.adopt(conn, settings, plan.integrity.unverified)
        log.info("integrity.adopted", migrations=[m.id for m in plan.integrity.unverified],
                 reason="applied without a content checksum (e.g. by the yoyo CLI); "
                        "recording the current file's checksum")
    check_schema(ctx)
    ctx.summary.pending = [m.id for m in plan.pending]
    for row in plan.state.applied:
        log.debug("migration.skipped", migration=row.id, reason="already applied")
    if not plan.pending:
        log.info("run.nothing_pending", applied=len(plan.state.applied))
        return
    log.info("run.plan", pending=ctx.summary.pending)
    safety_gate(ctx, plan, conn)
    take_backup_if_configured(ctx, plan, conn)
    apply(ctx, plan)
    verify(ctx, found)


def make_plan(conn: psycopg.Connection[Any], found: MigrationSet) -> Plan:
    state = tracking.read_state(conn)
    integrity = tracking.check(state, found.by_id())
    applied = state.ids()
    pending = found.in_dependency_order(m for m in found.migrations if m.id not in applied)
    return Plan(found, state, integrity, pending)


def refuse_on_integrity(ctx: Context, plan: Plan) -> None:
    integrity = plan.integrity
    if integrity.changed:
        files = ", ".join(f"{p} ({i})" for i, p in integrity.changed)
        raise IntegrityRefusal(
            f"applied migration file(s) changed since they were applied: {files}. Nothing was "
            "applied. Restore the original files, or after review run "
            "`migrate-job accept-changes ID... --yes`.",
            changed=[{"id": i, "file": p} for i, p in integrity.changed])
    if integrity.unknown:
        message = (f"{len(integrity.unknown)} applied migration(s) unknown to this image (the "
                   f"database is ahead of it?): {', '.join(integrity.unknown)}")
        if ctx.settings.on_unknown == "fail":
            raise IntegrityRefusal(message + " (MIGRATE_ON_UNKNOWN=fail)",
                                   unknown=integrity.unknown)
        ctx.log.warning("integrity.unknown_applied", migrations=integrity.unknown,
                        message=message)


def check_schema(ctx: Context) -> None:
    """Schema drift since the last recording: exit 5, or a warning (MIGRATE_ON_SCHEMA_DRIFT)."""
    from job import drift

    assert ctx.lock_conn is not None
    with ctx.lock_mutex:
        verdict = drift.check(ctx.lock_conn, ctx.settings, ctx.log, command=ctx.command,
                              run_id=ctx.run_id)
    if verdict.changes and verdict.state != "clean":
        ctx.summary.extra["schema_drift"] = verdict.texts(limit=10)


def record_schema(ctx: Context, reason: str) -> None:
    """After the schema changed, under the lock; never masks the error that ended a run."""
    from job import drift

    with ctx.lock_mutex:
        drift.record_quietly(ctx.lock_conn, ctx.settings, ctx.log, reason, run_id=ctx.run_id)


def safety_gate(ctx: Context, plan: Plan, conn: psycopg.Connection[Any]) -> None:
    from job.safety_gate import evaluate

    report = evaluate(ctx.settings, plan.pending, conn, ctx.log)
    if report is None:
        return
    ctx.summary.findings = [f for f in report.get("findings", [])]
    blocking = report.get("blocking", [])
    if blocking:
        first = blocking[0]
        raise SafetyRefusal(
            f"{len(blocking)} unapproved dangerous finding(s); first: {first['rule']} in "
            f"{first['path']}:{first['line']}: {first['message']}. Nothing was changed. Approve "
            f"in the file with `-- migrate-job: approve {first['rule']} \"reason\"` or set "
            "MIGRATE_ALLOW_DESTRUCTIVE=true for this deploy.",
            blocking=blocking)


def take_backup_if_configured(ctx: Context, plan: Plan, conn: psycopg.Connection[Any]) -> None:
    if ctx.settings.backup == "none":
        return
    from job.backup import take_backup

    assert ctx.params is not None
    with ctx.lock_mutex:
        result = take_backup(ctx.settings, ctx.params, conn,
                             applied=[r.id for r in plan.state.applied],
                             pending=[m.id for m in plan.pending], log=ctx.log)
    ctx.summary.backup = result.summary()


def apply(ctx: Context, plan: Plan) -> None:
    from job import drift
    from job.applier import Applier, BlockerWatcher

    mig = ctx.connect_migration()
    assert ctx.lock_conn is not None
    with ctx.lock_mutex:
        # Cleared by the recording below; if this process dies first, the next run knows the
        # schema moved under a run of ours, not behind everyone's back.
        drift.mark_in_flight(ctx.lock_conn, f"run {ctx.run_id} applying "
                             f"{len(plan.pending)} migration(s) from {plan.pending[0].id}")
    watcher = None
    if ctx.settings.lock_timeout > 0 and ctx.lock_conn is not None:
        watcher = BlockerWatcher(ctx.lock_conn, ctx.lock_mutex, mig.info.backend_pid,
                                 ctx.settings.lock_timeout).start()
    applier = Applier(mig, ctx.settings, ctx.log, watcher)
    if ctx.settings.tx_mode == "all" and any(not m.transactional for m in plan.pending):
        ctx.log.warning("run.tx_mode_all_split", reason="non-transactional migrations split "
                        "the single transaction; each batch between them is atomic")
    try:
        applier.apply(plan.pending, plan.migrations.post_apply)
    finally:
        if watcher:
            watcher.stop()
        ctx.summary.applied = [a.summary() for a in applier.applied]
        done = {a.id for a in applier.applied}
        ctx.summary.pending = [m.id for m in plan.pending if m.id not in done]
        # Success or failure: the record matches what is really there (a failed
        # non-transactional migration leaves its earlier statements applied).
        record_schema(ctx, f"{ctx.command}: applied {len(done)} of {len(plan.pending)}")


def verify(ctx: Context, found: MigrationSet) -> None:
    assert ctx.lock_conn is not None
    with ctx.lock_mutex:
        state = tracking.read_state(ctx.lock_conn)
    by_id = {r.id: r for r in state.applied}
    missing = [m.id for m in found.migrations if m.id not in by_id]
    wrong = [m.id for m in found.migrations
             if m.id in by_id and by_id[m.id].checksum not in (None, m.checksum)]
    if missing or wrong:
        raise VerificationFailed(
            f"after apply: still pending {missing or '-'}; records inconsistent {wrong or '-'}",
            pending=missing, inconsistent=wrong)
    ctx.summary.pending = []
    ctx.log.info("run.verified", applied_total=len(state.applied))


# -- status / plan (read-only) -------------------------------------------------------------------
def status(ctx: Context, as_json: bool) -> None:
    from job import drift, envguard

    found = migrations.read(ctx.settings.migrations_dir)
    conn = ctx.connect_admin(read_only=True)
    plan = make_plan(conn, found)
    env = envguard.inspect(conn, ctx.settings)
    schema = drift.inspect(conn, ctx.settings)
    data = plan.as_dict()
    data["environment"] = env.as_dict()
    data["schema"] = schema.as_dict()
    ctx.summary.pending = [m.id for m in plan.pending]
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(_status_text(plan) + "\n" + env.text() + "\n" + _schema_text(schema))
    if plan.integrity.changed:
        raise IntegrityRefusal(
            "applied migration file(s) changed: "
            + ", ".join(f"{p} ({i})" for i, p in plan.integrity.changed),
            changed=data["changed"])
    refuse_on_environment(env)
    if schema.drifted:
        raise IntegrityRefusal(f"the schema changed outside migrations: "
                               f"{_drift_summary(schema)}", schema_drift=schema.texts())
    if plan.pending:
        raise PendingMigrations(f"{len(plan.pending)} pending migration(s)")


def refuse_on_environment(env: Any, *, as_run: bool = False) -> None:
    """Read-only commands: a writing run naming another environment than the stamp's would be
    refused; say so with the same exit code. ``as_run`` (plan): also when it names none."""
    if env.mismatch or (as_run and env.stamp is not None and env.this_run is None):
        says = f"says '{env.this_run}'" if env.this_run else "names no environment"
        raise IntegrityRefusal(f"this database is stamped '{env.stamp.name}'; this run {says}",
                               environment_stamp=env.stamp.name, environment=env.this_run)


def _drift_summary(schema: Any) -> str:
    from job.drift.diff import summarize

    return summarize(schema.changes)


def _schema_text(v: Any) -> str:
    snap = v.snapshot
    where = ", ".join(snap.schemas) if snap else "?"
    if v.state == "unrecorded":
        return f"schema ({where}): no fingerprint recorded yet (the next writing run records it)"
    if v.state == "clean":
        return f"schema ({where}): as recorded ({snap.digest[:12] if snap else '?'})"
    lines = []
    if v.state == "stale":
        lines.append(f"schema ({where}): the record cannot vouch for the schema ("
                     + "; ".join(v.stale_reasons) + "); the next run re-records it")
    else:
        lines.append(f"schema ({where}): DRIFT, {len(v.changes)} change(s) outside migrations "
                     "(run refuses with exit 5; after review: migrate-job accept-schema --yes)")
    lines += [f"  {t}" for t in v.texts()]
    return "\n".join(lines)


def _status_text(plan: Plan) -> str:
    lines = []
    changed = {i for i, _ in plan.integrity.changed}
    unverified = {m.id for m in plan.integrity.unverified}
    unknown = set(plan.integrity.unknown)
    for r in plan.state.applied:
        mark = ("CHANGED " if r.id in changed else "UNKNOWN " if r.id in unknown
                else "applied " if r.id not in unverified else "applied*")
        when = r.applied_at.strftime("%Y-%m-%d %H:%M:%S") if r.applied_at else ""
        lines.append(f"{mark} {r.id}  {when}")
    for m in plan.pending:
        lines.append(f"pending  {m.id}")
    if unverified:
        lines.append("(* applied without a recorded checksum; `run` records it)")
    if not lines:
        lines.append("no migrations found and none applied")
    lines.append(f"{len(plan.state.applied)} applied, {len(plan.pending)} pending, "
                 f"{len(changed)} changed, {len(unknown)} unknown")
    return "\n".join(lines)


def plan_command(ctx: Context, fmt: str) -> None:
    from job import drift, envguard
    from job.safety_gate import evaluate, render_plan

    found = migrations.read(ctx.settings.migrations_dir)
    conn = ctx.connect_admin(read_only=True)
    with conn.transaction():
        plan = make_plan(conn, found)
        env = envguard.inspect(conn, ctx.settings)
        safety = evaluate(ctx.settings, plan.pending, conn, ctx.log)
    schema = drift.inspect(conn, ctx.settings)
    ctx.summary.pending = [m.id for m in plan.pending]
    data = plan.as_dict()
    data["safety"] = safety
    data["environment"] = env.as_dict()
    data["schema"] = schema.as_dict()
    print(render_plan(data, fmt))
    if fmt == "text":
        print(env.text() + "\n" + _schema_text(schema))
    if plan.integrity.changed:
        raise IntegrityRefusal("run would refuse: applied migration file(s) changed",
                               changed=data["changed"])
    refuse_on_environment(env, as_run=True)
    if schema.drifted and ctx.settings.on_schema_drift != "warn":
        raise IntegrityRefusal(f"run would refuse: the schema changed outside migrations: "
                               f"{_drift_summary(schema)}", schema_drift=schema.texts())
    if safety and safety.get("blocking"):
        raise SafetyRefusal(f"run would refuse: {len(safety['blocking'])} unapproved "
                            "dangerous finding(s)", blocking=safety["blocking"])
