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
            "reapplied_by_yoyo": [m.id for m in self.integrity.reapplied],
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
    refuse_on_integrity(ctx, plan)
    if plan.integrity.reapplied:
        with ctx.lock_mutex:
            tracking.readopt(conn, settings, plan.integrity.reapplied)
        log.info("integrity.readopted", migrations=[m.id for m in plan.integrity.reapplied],
                 reason="the yoyo CLI applied these again after migrate-job recorded them "
                        "(_yoyo_log); recording the current file's checksum")
    if plan.integrity.unverified:
        tracking.adopt(conn, settings, plan.integrity.unverified)
        log.info("integrity.adopted", migrations=[m.id for m in plan.integrity.unverified],
                 reason="applied without a content checksum (e.g. by the yoyo CLI); "
                        "recording the current file's checksum")
    ctx.summary.pending = [m.id for m in plan.pending]
    for row in plan.state.applied:
        log.debug("migration.skipped", migration=row.id, reason="already applied")
    if not plan.pending:
        log.info("run.nothing_pending", applied=len(plan.state.applied))
        check_invalid_indexes(ctx, conn, found)
        return
    log.info("run.plan", pending=ctx.summary.pending)
    safety_gate(ctx, plan, conn)
    take_backup_if_configured(ctx, plan, conn)
    apply(ctx, plan)
    verify(ctx, found)
    check_invalid_indexes(ctx, conn, found)


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
    from job.applier import Applier, BlockerWatcher

    mig = ctx.connect_migration()
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
        if applier.rebuilt:
            ctx.summary.extra["rebuilt_indexes"] = list(applier.rebuilt)
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


def invalid_indexes(conn: psycopg.Connection[Any], found: MigrationSet,
                    applied: set[str]) -> list[dict[str, Any]]:
    """Every INVALID index, with the migration that builds it (one catalog query when none)."""
    from job import indexes

    invalid = indexes.invalid_indexes(conn)
    return indexes.attribute(conn, invalid, found.migrations, applied) if invalid else []


def check_invalid_indexes(ctx: Context, conn: psycopg.Connection[Any],
                          found: MigrationSet) -> None:
    """A recorded migration whose index is INVALID is not success (exit 9, CONTRACT)."""
    with ctx.lock_mutex:
        state = tracking.read_state(conn)
        found_invalid = invalid_indexes(conn, found, state.ids())
    if not found_invalid:
        return
    ctx.summary.extra["invalid_indexes"] = found_invalid
    for item in found_invalid:
        ctx.log.warning("index.invalid", **item)
    recorded = [i for i in found_invalid if i.get("state") == "recorded"]
    if recorded:
        first = recorded[0]
        raise VerificationFailed(
            "INVALID index(es) built by recorded migration(s): " + ", ".join(
                f"{i['index']} ({i['migration']})" for i in recorded)
            + ". The planner never uses an INVALID index and every write still maintains it. "
            f"Fix: {first['fix']}.", invalid_indexes=recorded)


# -- status / plan (read-only) -------------------------------------------------------------------
def status(ctx: Context, as_json: bool) -> None:
    found = migrations.read(ctx.settings.migrations_dir)
    conn = ctx.connect_admin(read_only=True)
    plan = make_plan(conn, found)
    data = plan.as_dict()
    data["invalid_indexes"] = invalid_indexes(conn, found, plan.state.ids())
    ctx.summary.pending = [m.id for m in plan.pending]
    if data["invalid_indexes"]:
        ctx.summary.extra["invalid_indexes"] = data["invalid_indexes"]
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        print(_status_text(plan, data["invalid_indexes"]))
    if plan.integrity.changed:
        raise IntegrityRefusal(
            "applied migration file(s) changed: "
            + ", ".join(f"{p} ({i})" for i, p in plan.integrity.changed),
            changed=data["changed"])
    if plan.pending:
        raise PendingMigrations(f"{len(plan.pending)} pending migration(s)")


def _status_text(plan: Plan, invalid: list[dict[str, Any]] | None = None) -> str:
    lines = []
    changed = {i for i, _ in plan.integrity.changed}
    unverified = {m.id for m in [*plan.integrity.unverified, *plan.integrity.reapplied]}
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
    for i in invalid or []:
        owner = f"built by {i['migration']} ({i['state']})" if i.get("migration") else i["state"]
        fix = f"; fix: {i['fix']}" if i.get("fix") else ""
        lines.append(f"INVALID  {i['index']} on {i['table']}  {owner}{fix}")
    lines.append(f"{len(plan.state.applied)} applied, {len(plan.pending)} pending, "
                 f"{len(changed)} changed, {len(unknown)} unknown"
                 + (f", {len(invalid)} INVALID index(es)" if invalid else ""))
    return "\n".join(lines)


def plan_command(ctx: Context, fmt: str) -> None:
    from job.safety_gate import evaluate, render_plan

    found = migrations.read(ctx.settings.migrations_dir)
    conn = ctx.connect_admin(read_only=True)
    with conn.transaction():
        plan = make_plan(conn, found)
        safety = evaluate(ctx.settings, plan.pending, conn, ctx.log)
    ctx.summary.pending = [m.id for m in plan.pending]
    data = plan.as_dict()
    data["safety"] = safety
    print(render_plan(data, fmt))
    if plan.integrity.changed:
        raise IntegrityRefusal("run would refuse: applied migration file(s) changed",
                               changed=data["changed"])
    if safety and safety.get("blocking"):
        raise SafetyRefusal(f"run would refuse: {len(safety['blocking'])} unapproved "
                            "dangerous finding(s)", blocking=safety["blocking"])
