"""The environment guard: a database stamped 'production' is only written by runs that say so.

``MIGRATE_ENVIRONMENT=staging`` stamps the database on its first writing command. Afterwards a
writing command that names another environment, or none, is refused with exit 5 before it
changes anything: the staging pipeline pointed at the production secret by mistake stops at
the lock. Read-only commands report the stamp (and a mismatch when they name an environment).
Changing the stamp is ``migrate-job stamp-environment NAME --yes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from job import __version__
from job.errors import IntegrityRefusal

if TYPE_CHECKING:
    import psycopg

    from job.settings import Settings

TABLE = "_migrate_job_environment"

CREATE_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    name TEXT NOT NULL,
    stamped_at_utc TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    stamped_by TEXT,
    job_version TEXT,
    previous TEXT
)
"""

# Commands that change the database. The guard runs right after they take the lock
# (runtime.Context.take_lock), so commands added later are covered by naming them here.
WRITING = frozenset({"run", "exec", "rollback", "undo", "mark", "unmark", "accept-changes",
                     "accept-schema", "baseline", "import", "restore"})


@dataclass(frozen=True)
class Stamp:
    name: str
    stamped_at: Any
    stamped_by: str | None


@dataclass(frozen=True)
class Status:
    stamp: Stamp | None
    this_run: str | None

    @property
    def mismatch(self) -> bool:
        return (self.stamp is not None and self.this_run is not None
                and self.stamp.name != self.this_run)

    def as_dict(self) -> dict[str, Any]:
        return {"stamp": self.stamp.name if self.stamp else None,
                "stamped_at_utc": self.stamp.stamped_at.isoformat()
                if self.stamp and self.stamp.stamped_at else None,
                "this_run": self.this_run, "mismatch": self.mismatch}

    def text(self) -> str:
        if self.stamp is None:
            return ("environment: not stamped" + (f" (the next writing run stamps it "
                    f"'{self.this_run}')" if self.this_run else ""))
        line = f"environment: stamped '{self.stamp.name}'"
        if self.mismatch:
            line += f"; this run says '{self.this_run}': a writing run would be refused (exit 5)"
        elif self.this_run is None:
            line += "; this run names none (a writing run needs MIGRATE_ENVIRONMENT=" \
                    f"{self.stamp.name})"
        return line


def read(conn: psycopg.Connection[Any]) -> Stamp | None:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute(f"SELECT name, stamped_at_utc, stamped_by FROM {TABLE}").fetchone()
    return Stamp(*found) if found else None


def inspect(conn: psycopg.Connection[Any], settings: Settings) -> Status:
    """For read-only commands: the stamp and whether this run's name matches it."""
    return Status(read(conn), settings.environment)


def enforce(conn: psycopg.Connection[Any], settings: Settings, log: Any) -> Status:
    """Before a writing command changes anything (under the lock): refuse a mismatch with exit
    5; stamp an unstamped database when this run names its environment."""
    status = inspect(conn, settings)
    stamp, name = status.stamp, settings.environment
    if stamp is None:
        if name is not None:
            write(conn, settings, name)
            log.info("environment.stamped", environment=name,
                     message=f"this database is now stamped '{name}'")
        return status
    if name is None:
        raise IntegrityRefusal(
            f"this database is stamped '{stamp.name}'; this run names no environment. Nothing "
            f"was changed. Set MIGRATE_ENVIRONMENT={stamp.name} if this run is meant for it.",
            environment_stamp=stamp.name, environment=None)
    if name != stamp.name:
        raise IntegrityRefusal(
            f"this database is stamped '{stamp.name}'; this run says '{name}'. Nothing was "
            "changed: check the database secret this pipeline uses. If the database really "
            f"moved, run `migrate-job stamp-environment {name} --yes`.",
            environment_stamp=stamp.name, environment=name)
    log.debug("environment.matches", environment=name)
    return status


def write(conn: psycopg.Connection[Any], settings: Settings, name: str) -> str | None:
    """Set the stamp (under the lock); returns the previous name."""
    import psycopg

    try:
        return _write(conn, settings, name)
    except psycopg.errors.InsufficientPrivilege as exc:
        from job.errors import ConfigError

        raise ConfigError(
            f"cannot stamp the environment: {exc.diag.message_primary or exc} (the role needs "
            f"CREATE on its schema for {TABLE}, like the tracking tables)") from None


def _write(conn: psycopg.Connection[Any], settings: Settings, name: str) -> str | None:
    import contextlib

    with conn.transaction() if conn.autocommit else contextlib.nullcontext():
        conn.execute(CREATE_SQL)
        row = conn.execute(f"SELECT name FROM {TABLE} FOR UPDATE").fetchone()
        previous = row[0] if row else None
        conn.execute(
            f"INSERT INTO {TABLE} (singleton, name, stamped_by, job_version, previous) "
            "VALUES (true, %s, %s, %s, %s) ON CONFLICT (singleton) DO UPDATE SET "
            "name = EXCLUDED.name, stamped_at_utc = EXCLUDED.stamped_at_utc, "
            "stamped_by = EXCLUDED.stamped_by, job_version = EXCLUDED.job_version, "
            "previous = EXCLUDED.previous",
            (name, settings.user, __version__, previous))
    return previous
