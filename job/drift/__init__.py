"""Schema drift: is the database's schema still what the migrations made it?

After every command that changes the schema, the job records a canonical description of the
managed schemas (``catalog``) in ``_migrate_job_schema`` (``store``). Before planning, ``run``
compares the database with that record (``diff``): an out-of-band change (a column added by
hand, an index dropped in an incident, a function replaced from a console) stops the deploy
with exit 5 and an object-level report, or with ``MIGRATE_ON_SCHEMA_DRIFT=warn`` is logged,
recorded and the run goes on.

Other commands call two functions, both under the migration lock:

    drift.check(conn, settings, log, command="rollback")   # before changing anything
    drift.record(conn, settings, log, reason="rollback")   # after changing the schema

A record is *stale* rather than drifted when the job itself cannot vouch for it: migrations
were applied or removed since (an interrupted run, the yoyo CLI), a run was in flight, the
server's major version or the description format changed. A stale record is re-recorded with
a warning that lists the differences instead of refusing: a crash must not wedge the next
deploy (NOTES §5).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from job.drift.diff import Change, compare, summarize
from job.errors import IntegrityRefusal

if TYPE_CHECKING:
    import psycopg

    from job.drift.catalog import Description
    from job.drift.store import Recorded
    from job.settings import Settings

__all__ = ["Change", "Snapshot", "Verdict", "check", "inspect", "mark_in_flight", "record",
           "record_quietly", "take"]

# Bounds what one log line or summary carries (no log line over 16 KiB).
LOG_CHANGES = 25


@dataclass
class Snapshot:
    schemas: list[str]
    # None when only the catalog digest was read and it equalled the record's: the
    # description is then the recorded one, unread (``digest`` is the record's fingerprint).
    description: Description | None
    digest: str
    server_major: int
    seconds: float
    text: str | None = None  # the description's canonical JSON (hashed, then stored)
    catalog_digest: str | None = None  # the server's digest of the rows read (catalog.digest)


@dataclass
class Verdict:
    """What the database's schema looks like against its record."""

    state: str  # unrecorded | clean | drift | stale
    changes: list[Change] = field(default_factory=list)
    stale_reasons: list[str] = field(default_factory=list)
    recorded: Recorded | None = None
    snapshot: Snapshot | None = None

    @property
    def drifted(self) -> bool:
        return self.state == "drift"

    def texts(self, limit: int = LOG_CHANGES) -> list[str]:
        out = [c.text() for c in self.changes[:limit]]
        if len(self.changes) > limit:
            out.append(f"... and {len(self.changes) - limit} more (migrate-job status --json)")
        return out

    def as_dict(self) -> dict[str, Any]:
        rec = self.recorded
        return {
            "state": self.state,
            "changes": [c.as_dict() for c in self.changes],
            "stale_reasons": self.stale_reasons,
            "schemas": self.snapshot.schemas if self.snapshot else [],
            "fingerprint": self.snapshot.digest if self.snapshot else None,
            "recorded": None if rec is None else {
                "fingerprint": rec.fingerprint, "reason": rec.reason,
                "at_utc": rec.recorded_at.isoformat() if rec.recorded_at else None,
                "in_flight": rec.in_flight},
        }


def managed_schemas(conn: psycopg.Connection[Any], settings: Settings) -> list[str]:
    """MIGRATE_MANAGED_SCHEMAS, else the schema of the tracking tables."""
    if settings.managed_schemas:
        return sorted(set(settings.managed_schemas))
    row = conn.execute("SELECT current_schema()").fetchone()
    return [row[0]] if row and row[0] else []


def take(conn: psycopg.Connection[Any], settings: Settings,
         schemas: list[str] | None = None,
         helper: psycopg.Connection[Any] | None = None) -> Snapshot:
    """Read the managed schemas from the catalog now (``helper``: see ``catalog.read``)."""
    from job.drift import catalog, store

    started = time.monotonic()
    names = schemas if schemas is not None else managed_schemas(conn, settings)
    description, catalog_digest = catalog.read_with_digest(conn, names, helper)
    major = conn.info.server_version // 10000
    text = store.canonical(description)
    return Snapshot(names, description, store.fingerprint(description, text), major,
                    time.monotonic() - started, text, catalog_digest)


def inspect(conn: psycopg.Connection[Any], settings: Settings,
            reapplied: list[str] | None = None,
            helper: psycopg.Connection[Any] | None = None) -> Verdict:
    """Compare the database with its record, changing nothing (status, plan, and check).
    ``reapplied``: migrations the yoyo CLI applied again since we recorded them (their
    changes are a tool's, not drift). ``helper``: a second idle session that reads part of
    the catalog in parallel (``catalog.read``)."""
    from job.drift import catalog, store

    # The stored description (hundreds of KiB for a large schema) is fetched only when the
    # fingerprints differ: a clean no-op deploy reads the catalog and compares one hash.
    recorded = store.latest(conn, with_description=False)
    if recorded is None:
        return Verdict("unrecorded", snapshot=take(conn, settings, helper=helper))
    names = managed_schemas(conn, settings)
    major = conn.info.server_version // 10000
    stale: list[str] = []
    if recorded.format != catalog.FORMAT:
        stale.append(f"recorded in description format {recorded.format} (this migrate-job "
                     f"reads format {catalog.FORMAT})")
    if recorded.server_major != major:
        stale.append(f"recorded on PostgreSQL {recorded.server_major}, the server is now "
                     f"PostgreSQL {major} (catalog deparsing may differ)")
    if recorded.in_flight:
        stale.append(f"a run did not finish recording: {recorded.in_flight}")
    if reapplied:
        stale.append(f"the yoyo CLI applied {_few(sorted(reapplied))} again since the "
                     "recording")
    applied = store.applied_ids(conn)
    if sorted(recorded.migrations) != applied:
        added = sorted(set(applied) - set(recorded.migrations))
        removed = sorted(set(recorded.migrations) - set(applied))
        what = "; ".join(filter(None, [
            f"applied since: {_few(added)}" if added else "",
            f"no longer applied: {_few(removed)}" if removed else ""]))
        stale.append("migrations changed without a schema recording (an interrupted run, or "
                     f"another tool such as the yoyo CLI): {what}")
    if not stale and recorded.catalog_digest and sorted(recorded.schemas) == names:
        # First ask the server only for the digest of what the catalog queries return: equal
        # means the same rows as recorded, so the same description (catalog.py); the rows
        # are then neither sent, nor built into a description, nor hashed. Different (or a
        # record without one) is not drift by itself: the full read below decides.
        started = time.monotonic()
        now = catalog.digest(conn, names, helper)
        if now == recorded.catalog_digest:
            return Verdict("clean", [], [], recorded, Snapshot(
                names, None, recorded.fingerprint, major, time.monotonic() - started,
                catalog_digest=now))
    snap = take(conn, settings, names, helper)
    common = sorted(set(recorded.schemas) & set(snap.schemas))
    if not stale and recorded.fingerprint == snap.digest and sorted(recorded.schemas) == snap.schemas:
        return Verdict("clean", [], [], recorded, snap)
    recorded.description = store.description_of(conn, recorded.id)
    assert snap.description is not None
    changes = compare(recorded.description, snap.description, common)
    if stale:
        return Verdict("stale", changes, stale, recorded, snap)
    state = "drift" if changes else "clean"
    return Verdict(state, changes, [], recorded, snap)


def check(conn: psycopg.Connection[Any], settings: Settings, log: Any, *,
          command: str = "run", run_id: str | None = None,
          reapplied: Sequence[str] | None = None,
          helper: psycopg.Connection[Any] | None = None) -> Verdict:
    """Before a command changes the schema (under the lock): refuse on drift (exit 5), or with
    MIGRATE_ON_SCHEMA_DRIFT=warn log it and record the schema as it is; record a first
    fingerprint, or re-record a stale one, without refusing. ``reapplied``: migrations the
    yoyo CLI rolled back and applied again since they were recorded (their new content explains
    a difference, so the record is stale rather than drifted). ``helper``: a second idle
    session of ours, opened under the same lock, that reads part of the catalog in parallel."""
    from job.drift import store

    store.ensure(conn)
    verdict = inspect(conn, settings, list(reapplied or []), helper)
    snap = verdict.snapshot
    assert snap is not None
    fields = {"schemas": snap.schemas, "read_s": round(snap.seconds, 3)}
    if verdict.state == "unrecorded":
        _write(conn, settings, snap, reason=f"{command}: first recording", run_id=run_id)
        log.info("schema.recorded", reason="no schema fingerprint recorded yet (first run, or "
                 "a database adopted from yoyo): recording the current schema",
                 fingerprint=snap.digest[:12], **fields)
    elif verdict.state == "stale":
        _write(conn, settings, snap, reason=f"{command}: re-recorded stale record",
               run_id=run_id)
        log.warning("schema.stale_record", reasons=verdict.stale_reasons,
                    changes=verdict.texts(), fingerprint=snap.digest[:12],
                    message="the recorded schema could not be compared (" +
                    "; ".join(verdict.stale_reasons) + "); recorded the current schema" +
                    (f" with these differences: {summarize(verdict.changes)}"
                     if verdict.changes else ""), **fields)
    elif verdict.state == "drift":
        message = (f"the schema changed outside migrations since {_since(verdict)}: "
                   f"{summarize(verdict.changes)}")
        if settings.on_schema_drift != "warn":
            raise IntegrityRefusal(
                message + ". Nothing was applied. Undo the change, or after review run "
                "`migrate-job accept-schema --yes` (or set MIGRATE_ON_SCHEMA_DRIFT=warn).",
                schema_drift=verdict.texts())
        log.warning("schema.drift", changes=verdict.texts(), count=len(verdict.changes),
                    message=message + " (MIGRATE_ON_SCHEMA_DRIFT=warn: recorded, continuing)",
                    **fields)
        _write(conn, settings, snap, reason=f"{command}: drift accepted by "
               "MIGRATE_ON_SCHEMA_DRIFT=warn", run_id=run_id)
    else:
        if verdict.recorded and sorted(verdict.recorded.schemas) != snap.schemas:
            _write(conn, settings, snap, reason=f"{command}: managed schemas changed",
                   run_id=run_id)
        elif verdict.recorded and verdict.recorded.fingerprint != snap.digest:
            # Only differences that are not drift (an INVALID index rebuilt): keep the record
            # current so the next run compares one hash again.
            _write(conn, settings, snap, reason=f"{command}: repairs recorded", run_id=run_id)
        elif (verdict.recorded and snap.catalog_digest
              and verdict.recorded.catalog_digest != snap.catalog_digest):
            # The description is the recorded one, the rows behind it differ (or the record
            # came from an earlier version, without a digest): keep the digest of these rows,
            # so the next run can compare digests again.
            store.set_catalog_digest(conn, verdict.recorded.id, snap.catalog_digest)
        log.info("schema.unchanged", fingerprint=snap.digest[:12],
                 compared="digest" if snap.description is None else "description", **fields)
    return verdict


def record(conn: psycopg.Connection[Any], settings: Settings, log: Any, reason: str, *,
           run_id: str | None = None, read_conn: psycopg.Connection[Any] | None = None
           ) -> list[Change]:
    """Record the current schema as the expected one, after a command changed it (under the
    lock). Writes a row only when something differs from the newest one; returns (and logs)
    what the new record differs in from the previous one.

    ``read_conn``: an idle second session (e.g. the one that just ran the migrations) that
    reads part of the catalog in parallel with ``conn`` (``catalog.read``); the part it reads
    includes deparsing the indexes, for which its caches already hold what it created
    (measured on 500 new tables: 43 ms on the migrations' session alone, 30 ms split). If it
    fails (a lost connection), ``conn`` reads that part too."""
    from job.drift import store

    store.ensure(conn)
    previous = store.latest(conn, with_description=False)
    snap = take(conn, settings, helper=read_conn)
    applied = store.applied_ids(conn)
    if (previous is not None and previous.fingerprint == snap.digest
            and sorted(previous.migrations) == applied and not previous.in_flight
            and sorted(previous.schemas) == snap.schemas):
        if snap.catalog_digest and previous.catalog_digest != snap.catalog_digest:
            store.set_catalog_digest(conn, previous.id, snap.catalog_digest)  # as in check
        return []
    assert snap.description is not None
    changes = [] if previous is None or previous.fingerprint == snap.digest else compare(
        store.description_of(conn, previous.id), snap.description, snap.schemas)
    _write(conn, settings, snap, reason=reason, run_id=run_id, applied=applied)
    log.info("schema.recorded", reason=reason, fingerprint=snap.digest[:12],
             changes=[c.text() for c in changes[:LOG_CHANGES]], count=len(changes),
             schemas=snap.schemas, read_s=round(snap.seconds, 3))
    return changes


def record_quietly(conn: psycopg.Connection[Any] | None, settings: Settings, log: Any,
                   reason: str, *, run_id: str | None = None,
                   read_conn: psycopg.Connection[Any] | None = None) -> bool:
    """``record`` for failure paths: never raises (the original error is what matters); a
    record that could not be written leaves the in-flight note, so the next run re-records
    with a warning instead of reporting the job's own changes as drift."""
    if conn is None or conn.closed:
        return False
    try:
        record(conn, settings, log, reason, run_id=run_id, read_conn=read_conn)
        return True
    except Exception as exc:
        from job import redact

        log.warning("schema.not_recorded", reason=reason, error=redact.scrub(str(exc)))
        return False


def mark_in_flight(conn: psycopg.Connection[Any], note: str) -> None:
    """Note on the current record that a run is changing the schema; the record written when
    the run ends clears it."""
    from job.drift import store

    store.ensure(conn)
    store.set_in_flight(conn, note[:500])


def _write(conn: psycopg.Connection[Any], settings: Settings, snap: Snapshot, *, reason: str,
           run_id: str | None, applied: list[str] | None = None) -> None:
    from job.drift import catalog, store

    assert snap.description is not None  # a digest-only snapshot is never written
    store.insert(conn, reason=reason[:200], user=settings.user, run_id=run_id,
                 fmt=catalog.FORMAT, server_major=snap.server_major, schemas=snap.schemas,
                 digest=snap.digest,
                 migrations=applied if applied is not None else store.applied_ids(conn),
                 description=snap.description, text=snap.text,
                 catalog_digest=snap.catalog_digest)


def _since(v: Verdict) -> str:
    rec = v.recorded
    if rec is None or rec.recorded_at is None:
        return "the last recording"
    return f"the last recording ({rec.recorded_at:%Y-%m-%d %H:%M:%S} UTC, {rec.reason})"


def _few(ids: list[str], limit: int = 5) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
