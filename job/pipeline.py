"""The deploy pipeline and its read-only views.

``run`` reads top to bottom as CONTRACT.md describes it: settings -> secrets -> wait for the
database -> lock -> integrity -> plan -> safety gate -> backup -> apply -> verify -> report.
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
                         "has_rollback": m.has_rollback, "checksum": m.checksum}
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
    ctx.take_lock()
    with ctx.lock_mutex:
        tracking.ensure_tables(conn)
        plan = make_plan(conn, found)
    # Reported on every outcome, refusals included: what this run found pending.
    ctx.summary.pending = [m.id for m in plan.pending]
    refuse_on_integrity(ctx, plan)
    if plan.integrity.unverified:
        tracking.adopt(conn, settings, plan.integrity.unverified)
        log.info("integrity.adopted", migrations=[m.id for m in plan.integrity.unverified],
                 reason="applied without a content checksum (e.g. by the yoyo CLI); "
                        "recording the current file's checksum")
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


def safety_gate(ctx: Context, plan: Plan, conn: psycopg.Connection[Any]) -> None:
    from job.safety_gate import evaluate

    report = evaluate(ctx.settings, plan.pending, conn, ctx.log)
    if report is None:
        return
    ctx.summary.findings = [f for f in report.get("findings", [])]
    blocking = report.get("blocking", [])
    for f in blocking:
        ctx.log.error("safety.blocking_finding", rule=f.get("rule"), migration=f.get("migration"),
                      path=f.get("path"), line=f.get("line"), message=f.get("message"),
                      approve=approval_line(f.get("rule")))
    if blocking:
        first = blocking[0]
        # The way out first: a refusal is read in a narrow CI log pane.
        raise SafetyRefusal(
            f"to approve after review, add `{approval_line(first['rule'])}` to "
            f"{first['path']} (or set MIGRATE_ALLOW_DESTRUCTIVE=true for this deploy). "
            f"Nothing was changed: {len(blocking)} unapproved dangerous finding(s); first: "
            f"{first['rule']} at {first['path']}:{first['line']}: {first['message']}",
            blocking=blocking)


def approval_line(rule: Any) -> str:
    """The directive that approves a finding of ``rule`` (job.safety.directives reads it)."""
    return f'-- migrate-job: approve {rule} "reason"'


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
    from job.applier import Applier
    from job.progress import StatementWatcher

    mig = ctx.connect_migration()
    watcher = None
    if ctx.lock_conn is not None:
        watcher = StatementWatcher(ctx.lock_conn, ctx.lock_mutex, mig.info.backend_pid,
                                   ctx.settings.lock_timeout, heartbeat=ctx.settings.heartbeat,
                                   log=ctx.log).start()
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
    from job import views

    found = migrations.read(ctx.settings.migrations_dir)
    conn = ctx.connect_admin(read_only=True)
    plan = make_plan(conn, found)
    data = plan.as_dict()
    ctx.summary.pending = [m.id for m in plan.pending]
    # For status, "applied" is what the database has (a run's summary lists what it applied).
    ctx.summary.applied = [{"id": a["id"], "applied_at_utc": a["applied_at_utc"]}
                           for a in data["applied"]]
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        print(views.status_text({**data, **views.plan_extras(ctx.settings,
                                                              ctx.summary.database)},
                                width=views.stdout_width()))
    if plan.integrity.changed:
        raise IntegrityRefusal(
            "applied migration file(s) changed: "
            + ", ".join(f"{p} ({i})" for i, p in plan.integrity.changed),
            changed=data["changed"])
    if plan.pending:
        raise PendingMigrations(f"{len(plan.pending)} pending migration(s)")


def plan_command(ctx: Context, fmt: str, verbose: bool = False) -> None:
    from job import views
    from job.safety_gate import evaluate

    found = migrations.read(ctx.settings.migrations_dir)
    conn = ctx.connect_admin(read_only=True)
    with conn.transaction():
        plan = make_plan(conn, found)
        safety = evaluate(ctx.settings, plan.pending, conn, ctx.log)
    ctx.summary.pending = [m.id for m in plan.pending]
    data = plan.as_dict()
    data.update(views.plan_extras(ctx.settings, ctx.summary.database))
    for entry, m in zip(data["pending"], plan.pending, strict=True):
        entry["sql"] = views.statements_of(m)
    data["safety"] = safety
    print(views.render_plan(data, fmt, verbose=verbose, width=views.stdout_width()))
    if plan.integrity.changed:
        raise IntegrityRefusal("run would refuse: applied migration file(s) changed",
                               changed=data["changed"])
    if safety and safety.get("blocking"):
        first = safety["blocking"][0]
        raise SafetyRefusal(f"run would refuse: {len(safety['blocking'])} unapproved "
                            f"dangerous finding(s); approve after review with "
                            f"`{approval_line(first['rule'])}` in {first['path']}",
                            blocking=safety["blocking"])
