"""The deploy pipeline and its read-only views.

``run`` reads top to bottom as CONTRACT.md describes it: settings -> secrets -> wait for the
database -> lock -> environment check -> integrity -> schema drift -> plan -> safety gate ->
backup -> apply (+ verify scripts) -> verify -> report.
``status`` and ``plan`` share its first steps but never write.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from job import migrations, tracking
from job.errors import (
    IntegrityRefusal,
    PendingMigrations,
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
    # Pending but not for this phase (`run --phase pre` leaves the post migrations here).
    deferred: list[Migration] = field(default_factory=list)
    phase: str = "all"

    def select_phase(self, phase: str) -> Plan:
        """Keep in ``pending`` what ``run --phase PHASE`` applies; raises ConfigError (exit 2)
        when the phase cannot run in dependency order (job/phases.py)."""
        from job import phases

        selection = phases.select(self.pending, phase)
        self.pending, self.deferred, self.phase = selection.to_apply, selection.deferred, phase
        return self

    def as_dict(self, statements: dict[str, int] | None = None) -> dict[str, Any]:
        """`statements`: counts per migration from the safety gate's parse (libpg_query), so
        the plan never runs yoyo's much slower sqlparse splitter just to count."""
        counts = statements or {}
        return {
            "applied": [{"id": r.id, "applied_at_utc": r.applied_at.isoformat()
                         if r.applied_at else None, "checksum_recorded": r.checksum is not None}
                        for r in self.state.applied],
            "phase": self.phase,
            "pending": [{"id": m.id, "file": m.path, "phase": m.phase,
                         "transactional": m.transactional,
                         "depends": sorted(m.depends),
                         "statements": counts[m.id] if m.id in counts else len(m.steps),
                         "has_rollback": (os.path.exists(m.rollback_path) if m.is_sql
                                          else m.has_rollback),
                         "checksum": m.checksum, "verify": m.verify_path}
                        for m in self.pending],
            "deferred": [{"id": m.id, "file": m.path, "phase": m.phase} for m in self.deferred],
            "changed": [{"id": i, "file": p} for i, p in self.integrity.changed],
            "unknown": list(self.integrity.unknown),
            "unverified": [m.id for m in self.integrity.unverified],
            "reapplied_by_yoyo": [m.id for m in self.integrity.reapplied],
            "post_apply": [m.id for m in self.migrations.post_apply],
        }


# -- run ---------------------------------------------------------------------------------------
# From this many migrations on, `run` opens the migrations' session at the start (the schema
# check reads half of the catalog on it) and parses ahead before the lock. A long history stands
# for a schema whose catalog read is worth splitting (500 tables: -12 ms); on a short one the
# third session and the early guess cost more than they save (30 tables: a no-op 4% slower).
MANY_MIGRATIONS = 100


def run(ctx: Context) -> None:
    settings, log = ctx.settings, ctx.log
    found = migrations.read(settings.migrations_dir)
    ctx.prefetch("yoyo-lock")  # opens alongside the lock's own session
    big = len(found.migrations) >= MANY_MIGRATIONS
    if big:
        # The migrations' session opens now too: the schema check reads half of the catalog
        # on it (check_schema), then the apply uses it.
        ctx.prefetch("migrate")
    conn = ctx.connect_admin()
    # Parsing starts before the lock, on what is pending now (a read, no lock needed): the
    # second thread gets the lock's and the plan's round trips as a head start. The gate
    # parses whatever the plan under the lock adds.
    parsing = _parse_ahead(_pending_now(conn, found)) if big else None
    ctx.take_lock()  # and the environment check (runtime.Context.take_lock)
    with ctx.lock_mutex:
        tracking.ensure_tables(conn)
        plan = make_plan(conn, found)
    # Reported on every outcome, refusals included: what this run found pending.
    ctx.summary.pending = [m.id for m in plan.pending]
    refuse_on_integrity(ctx, plan)
    ctx.summary.extra["phase"] = settings.phase
    plan.select_phase(settings.phase)
    if plan.integrity.reapplied:
        with ctx.lock_mutex:
            tracking.readopt(conn, settings, plan.integrity.reapplied)
        log.info("integrity.readopted", migrations=[m.id for m in plan.integrity.reapplied],
                 reason="the yoyo CLI applied these again after migrate-job recorded them "
                        "(_yoyo_log); recording the current file's checksum")
    if plan.integrity.unverified:
        tracking.adopt(conn, settings, plan.integrity.unverified)
        log.info("integrity.adopted", migrations=[m.id for m in plan.integrity.unverified][:50],
                 count=len(plan.integrity.unverified),
                 reason="applied without a content checksum (e.g. by the yoyo CLI); "
                        "recording the current file's checksum")
    if parsing is None:
        parsing = _parse_ahead(plan.pending)  # while the schema check waits for the server
    check_schema(ctx, reapplied=[m.id for m in plan.integrity.reapplied],
                 helper="migrate" if big else None)
    for row in plan.state.applied:
        log.debug("migration.skipped", migration=row.id, reason="already applied")
    _log_deferred(ctx, plan)
    if not plan.pending:
        log.info("run.nothing_pending", applied=len(plan.state.applied), phase=plan.phase)
        # Nothing was applied since the plan read the state, under the lock: reuse it.
        check_invalid_indexes(ctx, conn, found, plan.state)
        return
    log.info("run.plan", pending=[m.id for m in plan.pending][:50], count=len(plan.pending),
             phase=plan.phase)
    if parsing is not None:
        parsing.join()
    ctx.prefetch("migrate")  # the migrations' session opens while the gate runs
    safety_gate(ctx, plan, conn)
    take_backup_if_configured(ctx, plan, conn)
    apply(ctx, plan)
    verify(ctx, found, plan)
    check_invalid_indexes(ctx, conn, found)


def _parse_ahead(pending: list[Migration]) -> threading.Thread | None:
    """Parse the pending migrations (and load the safety rules) on a second thread while this
    one waits for the server (the schema drift check): libpg_query runs without the GIL.
    Whatever it did not get to, or failed on, the gate parses itself and reports."""
    todo = [m for m in pending if m.is_sql]
    if not todo:
        return None

    def parse() -> None:
        try:
            import job.safety.engine  # noqa: F401  (the rules, for the gate)

            for m in todo:
                m.parsed()
        except Exception:  # noqa: S110 - the gate parses again and says what is wrong
            pass

    thread = threading.Thread(target=parse, name="parse-ahead", daemon=True)
    thread.start()
    return thread


def _pending_now(conn: psycopg.Connection[Any], found: MigrationSet) -> list[Migration]:
    """The migrations not applied yet, read without the lock: only a guess of the plan, for
    parsing ahead (the plan under the lock is what counts)."""
    row = conn.execute("SELECT to_regclass('_yoyo_migration') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return list(found.migrations)
    # As many applied as there are files: most likely nothing pending (a no-op deploy), not
    # worth fetching every id to find out.
    count = conn.execute("SELECT count(*) FROM _yoyo_migration").fetchone()
    if count and count[0] >= len(found.migrations):
        return []
    applied = {r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration")}
    return [m for m in found.migrations if m.id not in applied]


def _log_deferred(ctx: Context, plan: Plan) -> None:
    if not plan.deferred:
        return
    other = "post" if plan.phase == "pre" else "pre"
    ctx.log.info("run.deferred", phase=plan.phase, left_for=other,
                 migrations=[m.id for m in plan.deferred])
    if plan.phase == "post":
        # Pre migrations pending at post time: this release's pre phase did not run (or a
        # migration was added since). Not an error when nothing applied here depends on them.
        ctx.log.warning("run.pre_pending", migrations=[m.id for m in plan.deferred],
                        message="pre migrations are pending during the post phase: did the pre "
                                "phase of this release run?")


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


def check_schema(ctx: Context, reapplied: list[str] | None = None,
                 helper: str | None = None) -> None:
    """Schema drift since the last recording: exit 5, or a warning (MIGRATE_ON_SCHEMA_DRIFT).
    ``reapplied``: migrations the yoyo CLI applied again (re-adopted): not drift.
    ``helper``: a prefetched connection (purpose) that reads half of the catalog in parallel
    before its own use; the lock is held, so it reads what the lock's session would."""
    from job import drift

    assert ctx.lock_conn is not None
    second = ctx.borrow(helper) if helper else None
    try:
        with ctx.lock_mutex:
            verdict = drift.check(ctx.lock_conn, ctx.settings, ctx.log, command=ctx.command,
                                  run_id=ctx.run_id, reapplied=reapplied, helper=second)
    finally:
        if second is not None and helper:
            ctx.give_back(helper, second)
    if verdict.changes and verdict.state != "clean":
        ctx.summary.extra["schema_drift"] = verdict.texts(limit=10)


def record_schema(ctx: Context, reason: str) -> None:
    """After the schema changed, under the lock; never masks the error that ended a run.
    The catalog is read on the migrations' own session when it is idle (warm caches)."""
    from job import drift

    mig = ctx.mig_conn
    idle = mig is not None and not mig.closed and mig.info.transaction_status == 0
    with ctx.lock_mutex:
        drift.record_quietly(ctx.lock_conn, ctx.settings, ctx.log, reason, run_id=ctx.run_id,
                             read_conn=mig if idle else None)


def safety_gate(ctx: Context, plan: Plan, conn: psycopg.Connection[Any]) -> None:
    from job.rollout_gate import log_phase_hints
    from job.safety_gate import evaluate, refusal

    report = evaluate(ctx.settings, plan.pending, conn, ctx.log)

    log_phase_hints(ctx.log, report, plan.pending)
    _summarise_findings(ctx, report)
    error = refusal(report, {m.id: m.transactional for m in plan.pending})
    if error is not None:
        raise error


def _summarise_findings(ctx: Context, report: dict[str, Any]) -> None:
    """Blocking and approved findings in full, the rest as counts (the summary stays bounded)."""
    from job.safety_gate import summary_view

    findings, counts, omitted = summary_view(report)
    ctx.summary.findings = findings
    if counts:
        ctx.summary.extra["findings_by_rule"] = counts
    if omitted:
        ctx.summary.extra["findings_omitted"] = omitted


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
    from job.applier import Applier
    from job.progress import StatementWatcher

    mig = ctx.connect_migration()
    assert ctx.lock_conn is not None
    with ctx.lock_mutex:
        # Cleared by the recording below; if this process dies first, the next run knows the
        # schema moved under a run of ours, not behind everyone's back.
        drift.mark_in_flight(ctx.lock_conn, f"run {ctx.run_id} applying "
                             f"{len(plan.pending)} migration(s) from {plan.pending[0].id}")
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
        if applier.rebuilt:
            ctx.summary.extra["rebuilt_indexes"] = list(applier.rebuilt)
        ctx.summary.applied = [a.summary() for a in applier.applied]
        done = {a.id for a in applier.applied}
        ctx.summary.pending = [m.id for m in plan.pending if m.id not in done] + [
            m.id for m in plan.deferred]
        # Success or failure: the record matches what is really there (a failed
        # non-transactional migration leaves its earlier statements applied).
        record_schema(ctx, f"{ctx.command}: applied {len(done)} of {len(plan.pending)}")


def verify(ctx: Context, found: MigrationSet, plan: Plan) -> None:
    assert ctx.lock_conn is not None
    with ctx.lock_mutex:
        state = tracking.read_state(ctx.lock_conn)
    by_id = {r.id: r for r in state.applied}
    deferred = [m.id for m in plan.deferred]
    missing = [m.id for m in found.migrations if m.id not in by_id and m.id not in deferred]
    wrong = [m.id for m in found.migrations
             if m.id in by_id and by_id[m.id].checksum not in (None, m.checksum)]
    if missing or wrong:
        raise VerificationFailed(
            f"after apply: still pending {missing or '-'}; records inconsistent {wrong or '-'}",
            pending=missing, inconsistent=wrong)
    ctx.summary.pending = deferred
    ctx.log.info("run.verified", applied_total=len(state.applied), phase=plan.phase)


def invalid_indexes(conn: psycopg.Connection[Any], found: MigrationSet,
                    applied: set[str]) -> list[dict[str, Any]]:
    """Every INVALID index, with the migration that builds it (one catalog query when none)."""
    from job import indexes

    invalid = indexes.invalid_indexes(conn)
    return indexes.attribute(conn, invalid, found.migrations, applied) if invalid else []


def check_invalid_indexes(ctx: Context, conn: psycopg.Connection[Any],
                          found: MigrationSet, state: tracking.State | None = None) -> None:
    """A recorded migration whose index is INVALID is not success (exit 9, CONTRACT)."""
    with ctx.lock_mutex:
        if state is None:
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
    from job import drift, envguard, views

    found = migrations.read(ctx.settings.migrations_dir)
    conn = ctx.connect_admin(read_only=True)
    plan = make_plan(conn, found)
    env = envguard.inspect(conn, ctx.settings)
    schema = drift.inspect(conn, ctx.settings)
    data = plan.as_dict()
    data["environment"] = env.as_dict()
    data["schema"] = schema.as_dict()
    ctx.summary.pending = [m.id for m in plan.pending]
    # For status, "applied" is what the database has (a run's summary lists what it applied).
    ctx.summary.applied = [{"id": a["id"], "applied_at_utc": a["applied_at_utc"]}
                           for a in data["applied"]]
    data["invalid_indexes"] = invalid_indexes(conn, found, plan.state.ids())
    if data["invalid_indexes"]:
        ctx.summary.extra["invalid_indexes"] = data["invalid_indexes"]
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(views.status_text({**data, **views.plan_extras(ctx.settings,
                                                              ctx.summary.database)},
                                width=views.stdout_width())
              + "\n\n" + env.text() + "\n" + _schema_text(schema))
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


def plan_command(ctx: Context, fmt: str, verbose: bool = False) -> None:
    from job import drift, envguard, views
    from job.rollout_gate import phase_hints, render_hints
    from job.safety_gate import evaluate, refusal

    found = migrations.read(ctx.settings.migrations_dir)
    conn = ctx.connect_admin(read_only=True)
    with conn.transaction():
        plan = make_plan(conn, found)
        ctx.summary.pending = [m.id for m in plan.pending]
        plan.select_phase(ctx.settings.phase)
        parsing = _parse_ahead(plan.pending)
        env = envguard.inspect(conn, ctx.settings)
    # While the second thread parses (the catalog read sets its own search_path, so it runs
    # in a transaction of its own).
    schema = drift.inspect(conn, ctx.settings)
    with conn.transaction():
        if parsing is not None:
            parsing.join()
        safety = evaluate(ctx.settings, plan.pending, conn, ctx.log)
    data = plan.as_dict(safety.pop("statements_by_migration", None))
    data.update(views.plan_extras(ctx.settings, ctx.summary.database))
    for entry, m in zip(data["pending"], plan.pending, strict=True):
        entry["sql"] = views.statements_of(m)
    data["safety"] = safety
    data["environment"] = env.as_dict()
    data["schema"] = schema.as_dict()
    hints = phase_hints(safety, plan.pending)
    if hints:
        data["phase_hints"] = hints
    _summarise_findings(ctx, safety)
    text = views.render_plan(data, fmt, verbose=verbose, width=views.stdout_width())
    if fmt == "text":
        text = "\n".join([text, *render_hints(hints), *_deferred_lines(plan), "",
                          env.text(), _schema_text(schema)])
    print(text)
    if plan.integrity.changed:
        raise IntegrityRefusal("run would refuse: applied migration file(s) changed",
                               changed=data["changed"])
    refuse_on_environment(env, as_run=True)
    if schema.drifted and ctx.settings.on_schema_drift != "warn":
        raise IntegrityRefusal(f"run would refuse: the schema changed outside migrations: "
                               f"{_drift_summary(schema)}", schema_drift=schema.texts())
    error = refusal(safety, {m.id: m.transactional for m in plan.pending}, plan=True)
    if error is not None:
        raise error


def _deferred_lines(plan: Plan) -> list[str]:
    if not plan.deferred:
        return []
    other = "post" if plan.phase == "pre" else "pre"
    return [f"left for --phase {other}: " + ", ".join(m.id for m in plan.deferred)]
