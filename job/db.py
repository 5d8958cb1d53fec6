"""Connections: parameters kept apart from any URL, waiting with backoff, session settings.

Passwords travel as a libpq keyword, never inside a hand-built URL, so any character works.
Every connection says who it is (``application_name``) so a DBA looking at pg_stat_activity
sees us, and migration connections carry the timeouts that keep a migration from becoming an
outage (NOTES §4).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from job import __version__, redact
from job.errors import ConfigError, DatabaseUnavailable

if TYPE_CHECKING:
    import psycopg

    from job.settings import Settings

APPLICATION_NAME = f"migrate-job/{__version__}"

# Connection errors that waiting will not fix. libpq gives no SQLSTATE for these, only text.
_FATAL_MARKERS = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "role \"",
    "database \"",
    "pam authentication",
    "sasl authentication",
    "certificate",
    "ssl is not enabled",
    "server does not support ssl",
    "invalid connection option",
    "invalid sslmode",
    "invalid integer value",
    "invalid uri",
)
_AUTH_MARKERS = ("password authentication failed", "authentication failed", "no password supplied",
                 "pam authentication", "sasl authentication")


@dataclass(frozen=True)
class ConnParams:
    """libpq keyword parameters (host, port, user, password, dbname, sslmode, ...)."""

    params: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = {k: ("***" if k == "password" else v) for k, v in self.params.items()}
        return f"ConnParams({shown!r})"

    __str__ = __repr__

    @classmethod
    def from_url(cls, url: str, base: Mapping[str, str] | None = None) -> ConnParams:
        from psycopg.conninfo import conninfo_to_dict

        try:
            parsed = conninfo_to_dict(url)
        except Exception as exc:  # psycopg.ProgrammingError; text may quote the URL
            raise ConfigError(f"invalid database URL: {redact.scrub(str(exc))}") from None
        merged = dict(base or {})
        merged.update({k: str(v) for k, v in parsed.items() if v is not None})
        return cls(merged)

    def merged(self, **overrides: str | None) -> ConnParams:
        p = dict(self.params)
        p.update({k: v for k, v in overrides.items() if v is not None})
        return ConnParams(p)

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    def display(self) -> str:
        """``user@host:port/db`` for logs and summaries; never the password."""
        p = self.params
        host = p.get("host") or p.get("hostaddr") or "localhost"
        if host.startswith("/"):
            host = f"[socket {host}]"
        user = p.get("user", "")
        port = p.get("port", "5432")
        db = p.get("dbname") or user or "?"
        return f"{user + '@' if user else ''}{host}:{port}/{db}"

    def libpq_env(self) -> dict[str, str]:
        """Environment for a child process (pg_dump, psql): never argv, never the parent's env."""
        mapping = {
            "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "user": "PGUSER",
            "password": "PGPASSWORD", "dbname": "PGDATABASE", "sslmode": "PGSSLMODE",
            "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
            "sslcrl": "PGSSLCRL", "passfile": "PGPASSFILE", "connect_timeout": "PGCONNECT_TIMEOUT",
            "target_session_attrs": "PGTARGETSESSIONATTRS", "channel_binding": "PGCHANNELBINDING",
            "service": "PGSERVICE", "servicefile": "PGSERVICEFILE", "options": "PGOPTIONS",
            "application_name": "PGAPPNAME", "gssencmode": "PGGSSENCMODE",
            "sslnegotiation": "PGSSLNEGOTIATION",
        }
        return {mapping[k]: str(v) for k, v in self.params.items() if k in mapping}


def base_params(settings: Settings) -> ConnParams:
    """The connection parameters the environment gives (URL, else libpq ``PG*`` variables)."""
    base = dict(settings.libpq_params)
    if settings.database_url:
        return ConnParams.from_url(settings.database_url, base)
    return ConnParams(base)


def is_auth_failure(exc: BaseException) -> bool:
    text = str(exc).lower()
    return getattr(exc, "sqlstate", None) in {"28P01", "28000"} or any(
        m in text for m in _AUTH_MARKERS
    )


def _is_fatal(exc: BaseException) -> bool:
    text = str(exc).lower()
    return is_auth_failure(exc) or any(m in text for m in _FATAL_MARKERS)


def connect(params: ConnParams, *, autocommit: bool = False, connect_timeout: float = 10,
            purpose: str = "migrate") -> psycopg.Connection[Any]:
    import psycopg

    kwargs: dict[str, Any] = dict(params.params)
    kwargs.setdefault("application_name", f"{APPLICATION_NAME} {purpose}")
    kwargs["connect_timeout"] = str(max(2, int(connect_timeout)))
    return psycopg.connect(autocommit=autocommit, **kwargs)


class Prefetch:
    """A connection being opened on a thread while this one does something else (connecting
    is a few round trips and the password exchange: ~7 ms on a local server, more over a
    network). ``take()`` waits for it and returns it, or raises what connecting raised;
    ``discard()`` closes it if nobody took it."""

    def __init__(self, params: ConnParams, *, autocommit: bool, purpose: str) -> None:
        import threading

        self._conn: psycopg.Connection[Any] | None = None
        self._error: BaseException | None = None
        self._taken = False

        def run() -> None:
            try:
                self._conn = connect(params, autocommit=autocommit, purpose=purpose)
            except BaseException as exc:  # handed to whoever takes it
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"connect-{purpose}", daemon=True)
        self._thread.start()

    def take(self) -> psycopg.Connection[Any]:
        self._thread.join()
        self._taken = True
        if self._error is not None:
            raise self._error
        assert self._conn is not None
        return self._conn

    def discard(self) -> None:
        if self._taken:
            return
        self._taken = True
        self._thread.join(timeout=30)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()


def wait_for_database(
    get_params: Callable[[bool], ConnParams],
    settings: Settings,
    log: Any,
    *,
    autocommit: bool = True,
    purpose: str = "lock",
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[psycopg.Connection[Any], ConnParams]:
    """Connect, retrying with capped, jittered exponential backoff until ``MIGRATE_DB_WAIT``.

    ``get_params(refresh)`` returns the parameters; on an authentication failure it is called
    once more with ``refresh=True`` (a rotated secret) before giving up. Authentication and
    configuration errors are not retried for the whole wait: they will not fix themselves.
    """
    import psycopg

    deadline = time.monotonic() + settings.db_wait
    params = get_params(False)
    refreshed = False
    attempt = 0
    delay = 0.25
    while True:
        attempt += 1
        try:
            conn = connect(params, autocommit=autocommit, purpose=purpose,
                           connect_timeout=min(10.0, max(2.0, settings.db_wait)))
            if attempt > 1:
                log.info("db.connected", attempt=attempt, database=params.display())
            return conn, params
        except psycopg.OperationalError as exc:
            message = redact.scrub(str(exc).strip())
            if is_auth_failure(exc) and not refreshed:
                refreshed = True
                log.warning("db.auth_failed_refetching_secret", database=params.display(),
                            error=message)
                params = get_params(True)
                continue
            if _is_fatal(exc):
                raise DatabaseUnavailable(
                    f"cannot connect to {params.display()}: {message}",
                    database=params.display(),
                ) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseUnavailable(
                    f"database {params.display()} not reachable within "
                    f"{settings.db_wait:g}s ({attempt} attempts): {message}",
                    database=params.display(),
                ) from None
            wait = min(remaining, delay * random.uniform(0.5, 1.0))
            log.info("db.waiting", attempt=attempt, retry_in_s=round(wait, 2),
                     database=params.display(), error=message)
            sleep(wait)
            delay = min(delay * 2, 5.0)


def session_setup_sql(settings: Settings, server_version: int, *, migration: bool) -> str:
    """SET statements for our sessions. Migration sessions get the protective timeouts."""
    stmts = []
    if server_version >= 140000:
        # A killed client's backend would otherwise keep running (and holding locks).
        stmts.append("SET client_connection_check_interval = '5s'")
    if migration:
        stmts.append(f"SET lock_timeout = '{int(settings.lock_timeout * 1000)}ms'")
        stmts.append(f"SET statement_timeout = '{int(settings.statement_timeout * 1000)}ms'")
        stmts.append("SET idle_in_transaction_session_timeout = '60s'")
    return "; ".join(stmts)


def prepare_session(conn: psycopg.Connection[Any], settings: Settings, *, migration: bool) -> None:
    sql = session_setup_sql(settings, conn.info.server_version, migration=migration)
    if sql:
        conn.execute(sql)
        if not conn.autocommit:
            conn.commit()
