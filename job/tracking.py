"""Tracking tables: yoyo's own (so the yoyo CLI still reads the database) and ours beside them.

``_yoyo_migration``/``_yoyo_log``/``_yoyo_version`` keep yoyo 9's exact shape.
``_migrate_job_migration`` holds the content checksum of every migration we applied, marked or
adopted; ``_migrate_job_run`` the run history (who, which version/image, when, how long).
Tables are created only under the migration lock; read-only commands treat missing tables as
"nothing applied".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from job import __version__
from job.errors import ConfigError
from job.migrations import CHECKSUM_ALGORITHM, Migration

if TYPE_CHECKING:
    import psycopg

    from job.settings import Settings

YOYO_SCHEMA_VERSION = 2

_CREATE_SQL = """
CREATE TABLE IF NOT EXISTS _yoyo_migration (
    migration_hash VARCHAR(64) NOT NULL PRIMARY KEY,
    migration_id VARCHAR(255),
    applied_at_utc TIMESTAMP
);
CREATE TABLE IF NOT EXISTS _yoyo_log (
    id VARCHAR(36) NOT NULL PRIMARY KEY,
    migration_hash VARCHAR(64),
    migration_id VARCHAR(255),
    operation VARCHAR(10),
    username VARCHAR(255),
    hostname VARCHAR(255),
    comment VARCHAR(255),
    created_at_utc TIMESTAMP
);
CREATE TABLE IF NOT EXISTS _yoyo_version (
    version INT NOT NULL PRIMARY KEY,
    installed_at_utc TIMESTAMP
);
CREATE TABLE IF NOT EXISTS _migrate_job_migration (
    migration_id TEXT NOT NULL PRIMARY KEY,
    checksum TEXT NOT NULL,
    checksum_algorithm TEXT NOT NULL,
    recorded_at_utc TIMESTAMP NOT NULL,
    recorded_by TEXT,
    how TEXT NOT NULL,
    job_version TEXT,
    duration_ms INTEGER
);
CREATE TABLE IF NOT EXISTS _migrate_job_run (
    id UUID NOT NULL PRIMARY KEY,
    command TEXT NOT NULL,
    started_at_utc TIMESTAMP NOT NULL,
    finished_at_utc TIMESTAMP,
    outcome TEXT,
    exit_code INTEGER,
    applied JSONB,
    username TEXT,
    hostname TEXT,
    job_version TEXT,
    image TEXT,
    duration_ms INTEGER{run_columns}
);
"""

# One round trip per migration: yoyo's mark, yoyo's log line and our checksum record.
RECORD_SQL = """
WITH m AS (
    INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc)
    VALUES (%(hash)s, %(id)s, %(now)s)
    RETURNING 1
), l AS (
    INSERT INTO _yoyo_log (id, migration_hash, migration_id, operation, username, hostname,
                           comment, created_at_utc)
    VALUES (%(log_id)s, %(hash)s, %(id)s, %(operation)s, %(user)s, %(host)s, %(comment)s, %(now)s)
    RETURNING 1
)
INSERT INTO _migrate_job_migration (migration_id, checksum, checksum_algorithm, recorded_at_utc,
                                    recorded_by, how, job_version, duration_ms)
VALUES (%(id)s, %(checksum)s, %(algorithm)s, %(now)s, %(user)s, %(how)s, %(version)s,
        -- Measured by the server when the client could not (pipelined): since the marker
        -- set by STARTED_SQL at the start of this migration when a transaction holds several,
        -- else since the transaction began.
        COALESCE(%(duration_ms)s, (extract(epoch FROM clock_timestamp() - coalesce(nullif(
            current_setting('migrate_job.started_at', true), '')::timestamptz, now()))
            * 1000)::int))
ON CONFLICT (migration_id) DO UPDATE SET
    checksum = EXCLUDED.checksum, checksum_algorithm = EXCLUDED.checksum_algorithm,
    recorded_at_utc = EXCLUDED.recorded_at_utc, recorded_by = EXCLUDED.recorded_by,
    how = EXCLUDED.how, job_version = EXCLUDED.job_version, duration_ms = EXCLUDED.duration_ms
RETURNING duration_ms
"""

STARTED_SQL = "SELECT set_config('migrate_job.started_at', clock_timestamp()::text, true)"

FORGET_SQL = """
WITH m AS (
    DELETE FROM _yoyo_migration WHERE migration_hash = %(hash)s RETURNING 1
), l AS (
    INSERT INTO _yoyo_log (id, migration_hash, migration_id, operation, username, hostname,
                           comment, created_at_utc)
    VALUES (%(log_id)s, %(hash)s, %(id)s, %(operation)s, %(user)s, %(host)s, %(comment)s, %(now)s)
    RETURNING 1
)
DELETE FROM _migrate_job_migration WHERE migration_id = %(id)s
"""

LOG_ONLY_SQL = """
INSERT INTO _yoyo_log (id, migration_hash, migration_id, operation, username, hostname, comment,
                       created_at_utc)
VALUES (%(log_id)s, %(hash)s, %(id)s, %(operation)s, %(user)s, %(host)s, %(comment)s, %(now)s)
"""


# RECORD_SQL's parameters in the order ``positional`` numbers them ($1, $2, ...).
RECORD_FIELDS = ("hash", "id", "now", "log_id", "operation", "user", "host", "comment",
                 "checksum", "algorithm", "how", "version", "duration_ms")


def positional(sql: str, fields: Sequence[str]) -> bytes:
    """``%(name)s`` placeholders as ``$n``, for a statement sent through libpq directly."""
    for i, name in enumerate(fields, start=1):
        sql = sql.replace(f"%({name})s", f"${i}")
    assert "%(" not in sql, sql
    return sql.encode()


def record_values(settings: Settings, m: Any, *, operation: str, how: str,
                  duration_ms: int | None = None) -> list[bytes | None]:
    """``record_params`` as the text values of ``positional(RECORD_SQL, RECORD_FIELDS)``."""
    p = record_params(settings, m, operation=operation, how=how, duration_ms=duration_ms)
    out: list[bytes | None] = []
    for name in RECORD_FIELDS:
        v = p[name]
        out.append(None if v is None else (v.isoformat() if isinstance(v, datetime)
                                           else str(v)).encode())
    return out


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def record_params(settings: Settings, m: Any, *, operation: str, how: str,
                  duration_ms: int | None = None, comment: str | None = None) -> dict[str, Any]:
    return {
        "hash": m.hash,
        "id": m.id,
        "now": now_utc(),
        "log_id": str(uuid.uuid4()),
        "operation": operation,
        "user": settings.user[:255],
        "host": settings.hostname[:255],
        "comment": (comment or f"migrate-job {__version__}")[:255],
        "checksum": m.checksum,
        "algorithm": CHECKSUM_ALGORITHM,
        "how": how,
        "version": __version__,
        "duration_ms": duration_ms,
    }


@dataclass
class AppliedRow:
    id: str
    applied_at: datetime | None
    checksum: str | None = None
    algorithm: str | None = None
    how: str | None = None
    recorded_at: datetime | None = None  # when we last recorded our checksum
    yoyo_applied_at: datetime | None = None  # latest 'apply' the yoyo CLI logged for it

    def reapplied_by_yoyo(self) -> bool:
        """Did the yoyo CLI apply this migration again after we recorded it (``yoyo rollback``,
        an edit, ``yoyo apply``)?

        yoyo logs the apply, then writes the ``_yoyo_migration`` row, both with its own clock,
        moments apart; a row we wrote carries exactly our ``recorded_at``. So for a migration we
        applied or marked, a current row that is not ours and matches a yoyo apply is proof,
        whatever the clocks say. For an adopted or accepted record (whose row was never ours)
        the yoyo apply must be logged after our record: that compares yoyo's clock with ours.
        """
        yl, at = self.yoyo_applied_at, self.applied_at
        if yl is None or at is None or not (0 <= (at - yl).total_seconds() <= 60):
            return False
        if self.recorded_at is None:
            return False
        if self.how in ("applied", "marked"):
            return at != self.recorded_at
        return yl > self.recorded_at


@dataclass
class State:
    """What the database says was applied, in application order."""

    exists: bool
    applied: list[AppliedRow] = field(default_factory=list)

    def ids(self) -> set[str]:
        return {r.id for r in self.applied}


def tables_exist(conn: psycopg.Connection[Any]) -> tuple[bool, bool]:
    row = conn.execute(
        "SELECT to_regclass('_yoyo_migration') IS NOT NULL, "
        "to_regclass('_migrate_job_migration') IS NOT NULL"
    ).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1])


def read_state(conn: psycopg.Connection[Any]) -> State:
    yoyo_exists, ours_exists = tables_exist(conn)
    if not yoyo_exists:
        return State(exists=False)
    if ours_exists:
        # yoyo's own log lines have no comment (ours say "migrate-job <version>").
        rows = conn.execute(
            "SELECT y.migration_id, y.applied_at_utc, j.checksum, j.checksum_algorithm, j.how, "
            "j.recorded_at_utc, l.at "
            "FROM _yoyo_migration y LEFT JOIN _migrate_job_migration j "
            "ON j.migration_id = y.migration_id "
            "LEFT JOIN (SELECT migration_hash, max(created_at_utc) AS at FROM _yoyo_log "
            "           WHERE operation = 'apply' AND comment IS NULL GROUP BY 1) l "
            "ON l.migration_hash = y.migration_hash "
            "ORDER BY y.applied_at_utc, y.migration_id"
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT migration_id, applied_at_utc, NULL, NULL, NULL FROM _yoyo_migration "
            "ORDER BY applied_at_utc, migration_id"
        ).fetchall()
    return State(True, [AppliedRow(*r) for r in rows])


def ensure_tables(conn: psycopg.Connection[Any]) -> None:
    """Create or upgrade the tracking tables. Call only while holding the migration lock."""
    yoyo_exists, ours_exists = tables_exist(conn)
    if yoyo_exists and ours_exists:
        ensure_run_columns(conn)
        return
    if not yoyo_exists:
        _check_create_privilege(conn)
    else:
        # yoyo's pre-6.0 layout (id/ctime) would need yoyo's own upgrade; refuse clearly.
        # (Only asked when the table exists: on a fresh database information_schema's
        # planning on a new session is a few ms for an answer known in advance.)
        row = conn.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = '_yoyo_migration' AND column_name = 'migration_hash' "
            "AND table_schema = current_schema()"
        ).fetchone()
        if row and row[0] == 0:
            raise ConfigError("_yoyo_migration has yoyo's pre-6.0 layout: run `yoyo apply` "
                              "once with yoyo 9 to upgrade it, then rerun")
    with conn.transaction():
        conn.execute(CREATE_SQL)
        conn.execute(
            "INSERT INTO _yoyo_version (version, installed_at_utc) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING",
            (YOYO_SCHEMA_VERSION, now_utc()),
        )
    ensure_run_columns(conn)


def _check_create_privilege(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT current_schema(), current_user, "
        "coalesce(has_schema_privilege(current_schema(), 'CREATE'), false)"
    ).fetchone()
    assert row is not None
    schema, user, can_create = row
    if schema is None:
        raise ConfigError(f"role {user} has no current schema (check search_path)")
    if not can_create:
        raise ConfigError(
            f"role {user} cannot CREATE in schema {schema}: the tracking tables cannot be "
            f"created (GRANT CREATE ON SCHEMA {schema} TO {user}, or run as the schema owner)"
        )


@dataclass
class Integrity:
    changed: list[tuple[str, str]] = field(default_factory=list)  # (id, path)
    unknown: list[str] = field(default_factory=list)
    unverified: list[Migration] = field(default_factory=list)  # applied by plain yoyo: adopt
    reapplied: list[Migration] = field(default_factory=list)  # re-applied by yoyo: re-adopt


def check(state: State, known: dict[str, Migration]) -> Integrity:
    result = Integrity()
    for row in state.applied:
        m = known.get(row.id)
        if m is None:
            result.unknown.append(row.id)
        elif row.checksum is None:
            result.unverified.append(m)
        elif row.algorithm != CHECKSUM_ALGORITHM:
            # Only one algorithm exists; a different name means a newer job wrote it.
            raise ConfigError(f"migration {row.id} was recorded with checksum algorithm "
                              f"{row.algorithm!r}, unknown to migrate-job {__version__}")
        elif row.checksum != m.checksum:
            if row.reapplied_by_yoyo():
                result.reapplied.append(m)
            else:
                result.changed.append((row.id, m.path))
    return result


def adopt(conn: psycopg.Connection[Any], settings: Settings, migrations: Sequence[Migration]
          ) -> None:
    """Record checksums for migrations applied earlier without one (e.g. by the yoyo CLI)."""
    with conn.transaction():
        for m in migrations:
            conn.execute(
                "INSERT INTO _migrate_job_migration (migration_id, checksum, checksum_algorithm,"
                " recorded_at_utc, recorded_by, how, job_version) VALUES "
                "(%s, %s, %s, %s, %s, 'adopted', %s) ON CONFLICT (migration_id) DO NOTHING",
                (m.id, m.checksum, CHECKSUM_ALGORITHM, now_utc(), settings.user, __version__),
            )


def readopt(conn: psycopg.Connection[Any], settings: Settings, migrations: Sequence[Migration]
            ) -> None:
    """Record the current checksum of migrations the yoyo CLI re-applied after we recorded
    them: the database holds what yoyo applied from these files."""
    with conn.transaction():
        for m in migrations:
            conn.execute(
                "UPDATE _migrate_job_migration SET checksum = %s, checksum_algorithm = %s, "
                "recorded_at_utc = %s, recorded_by = %s, how = 'adopted', job_version = %s "
                "WHERE migration_id = %s",
                (m.checksum, CHECKSUM_ALGORITHM, now_utc(), settings.user, __version__, m.id))


# Columns added to _migrate_job_run after its first release; a database created by an older
# job (or restored from an older backup) gets them on the next run, under the lock.
RUN_COLUMNS = {
    "phase": "TEXT",  # pre | post | all (run, exec)
    "backup_uri": "TEXT",  # the backup this run took, for `undo --restore`
    "backup_sha256": "TEXT",
    "backup_bytes": "BIGINT",
    "reverted": "JSONB",  # ids rolled back by rollback/undo
    "undoes": "UUID",  # the run an undo reverted
    "message": "TEXT",  # why it failed, shortened
}


# A new database gets every run-history column at once (no ALTER TABLE transaction after it).
CREATE_SQL = _CREATE_SQL.format(run_columns="".join(
    f",\n    {name} {kind}" for name, kind in RUN_COLUMNS.items()))


def ensure_run_columns(conn: psycopg.Connection[Any]) -> None:
    """Add the newer run-history columns. Call only while holding the migration lock."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('_migrate_job_run') "
        "AND attnum > 0 AND NOT attisdropped").fetchall()
    present = {r[0] for r in rows}
    if not present:
        return
    missing = [name for name in RUN_COLUMNS if name not in present]
    if missing:
        with conn.transaction():
            conn.execute("ALTER TABLE _migrate_job_run " + ", ".join(
                f"ADD COLUMN IF NOT EXISTS {name} {RUN_COLUMNS[name]}" for name in missing))


@dataclass
class RunRecord:
    """One row of _migrate_job_run, as the edge writes it after every recorded command."""

    run_id: str
    command: str
    started: datetime
    outcome: str
    exit_code: int
    applied: list[dict[str, Any]]
    duration_s: float
    phase: str | None = None
    backup: dict[str, Any] | None = None
    reverted: list[str] | None = None
    undoes: str | None = None
    message: str | None = None


def record_run(conn: psycopg.Connection[Any], settings: Settings, run: RunRecord) -> None:
    ensure_run_columns(conn)
    backup = run.backup or {}
    conn.execute(
        "INSERT INTO _migrate_job_run (id, command, started_at_utc, finished_at_utc, outcome, "
        "exit_code, applied, username, hostname, job_version, image, duration_ms, phase, "
        "backup_uri, backup_sha256, backup_bytes, reverted, undoes, message) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (run.run_id, run.command, run.started, now_utc(), run.outcome, run.exit_code,
         json.dumps(run.applied), settings.user, settings.hostname, __version__, settings.image,
         int(run.duration_s * 1000), run.phase, backup.get("uri"), backup.get("sha256"),
         backup.get("bytes"), json.dumps(run.reverted) if run.reverted is not None else None,
         run.undoes, (run.message or "")[:1000] or None),
    )
