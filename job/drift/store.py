"""``_migrate_job_schema``: the expected schema, one row per recording (the newest one counts).

Each row holds the description, its hash, what the job knew when it wrote it (the applied
migrations, the server's major version, the description format) and an ``in_flight`` note set
while a run applies migrations. yoyo's tables are never touched.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from job import __version__

if TYPE_CHECKING:
    import psycopg

    from job.drift.catalog import Description

TABLE = "_migrate_job_schema"
KEEP = 10  # rows kept: the newest is the expected schema, the rest are for looking back

CREATE_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recorded_at_utc TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    recorded_by TEXT,
    reason TEXT NOT NULL,
    run_id TEXT,
    job_version TEXT,
    format INTEGER NOT NULL,
    server_major INTEGER NOT NULL,
    schemas TEXT[] NOT NULL,
    fingerprint TEXT NOT NULL,
    migrations TEXT[] NOT NULL,
    in_flight TEXT,
    description JSONB NOT NULL,
    catalog_digest TEXT
)
"""
# Added after the first release: a table an earlier version created gets it under the lock
# (ensure); records it writes leave it NULL, which only means "compare the description".
ADD_DIGEST_SQL = f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS catalog_digest TEXT"


@dataclass
class Recorded:
    id: int
    recorded_at: Any
    reason: str
    format: int
    server_major: int
    schemas: list[str]
    fingerprint: str
    migrations: list[str]
    in_flight: str | None
    description: Description
    # The server's digest of the catalog rows the description was built from (catalog.digest);
    # None in records of earlier versions.
    catalog_digest: str | None = None


def canonical(description: Description) -> str:
    """The canonical JSON of a description: what its fingerprint hashes, and what is stored."""
    return json.dumps(description, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def fingerprint(description: Description, text: str | None = None) -> str:
    """sha256 of the canonical JSON of the description (``text``: that JSON, if at hand)."""
    if text is None:
        text = canonical(description)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _state(conn: psycopg.Connection[Any]) -> tuple[bool, bool]:
    """(the table exists, it has the catalog_digest column), in one round trip."""
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, EXISTS (SELECT 1 FROM pg_catalog.pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = 'catalog_digest' "
        "AND NOT attisdropped)", (TABLE, TABLE)).fetchone()
    return (bool(row[0]), bool(row[1])) if row else (False, False)


def exists(conn: psycopg.Connection[Any]) -> bool:
    return _state(conn)[0]


# What ``ensure`` just made sure of, for the ``latest`` that follows it at once (check and
# record call them back to back): one catalog round trip less, used once, so a table that
# something drops or restores later in the command is asked about again.
_ENSURED: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def ensure(conn: psycopg.Connection[Any]) -> None:
    """Create the table if missing, or add what an earlier version's lacks. Call only while
    holding the migration lock."""
    table, has_digest = _state(conn)
    if not table:
        conn.execute(CREATE_SQL)
    elif not has_digest:
        conn.execute(ADD_DIGEST_SQL)
    _ENSURED[conn] = True


def latest(conn: psycopg.Connection[Any], *, with_description: bool = True
           ) -> Recorded | None:
    # Read-only commands never add the column: ask, unless ensure() just made it so.
    table, has_digest = (True, True) if _ENSURED.pop(conn, False) else _state(conn)
    if not table:
        return None
    cols = "description" if with_description else "NULL"
    digest = "catalog_digest" if has_digest else "NULL"
    row = conn.execute(
        f"SELECT id, recorded_at_utc, reason, format, server_major, schemas, fingerprint, "
        f"migrations, in_flight, {cols}, {digest} FROM {TABLE} ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return Recorded(id=row[0], recorded_at=row[1], reason=row[2], format=row[3],
                    server_major=row[4], schemas=list(row[5]), fingerprint=row[6],
                    migrations=list(row[7]), in_flight=row[8], description=row[9] or {},
                    catalog_digest=row[10])


def set_catalog_digest(conn: psycopg.Connection[Any], record_id: int, digest: str) -> None:
    """Complete a record whose description is still what the catalog says (its fingerprint
    equals the one just read) with the digest of the rows just read."""
    conn.execute(f"UPDATE {TABLE} SET catalog_digest = %s WHERE id = %s", (digest, record_id))


def description_of(conn: psycopg.Connection[Any], record_id: int) -> Description:
    row = conn.execute(f"SELECT description FROM {TABLE} WHERE id = %s",
                       (record_id,)).fetchone()
    return row[0] if row and row[0] else {}


def insert(conn: psycopg.Connection[Any], *, reason: str, user: str, run_id: str | None,
           fmt: int, server_major: int, schemas: list[str], digest: str,
           migrations: list[str], description: Description, text: str | None = None,
           catalog_digest: str | None = None) -> None:
    """``text``: the description's canonical JSON when the caller has it (the fingerprint was
    computed from it), so it is not serialised a second time (~3 ms for 500 tables)."""
    import contextlib

    from psycopg.types.json import Jsonb

    value: Any = text if text is not None else Jsonb(description)
    with conn.transaction() if conn.autocommit else contextlib.nullcontext():
        conn.execute(
            f"INSERT INTO {TABLE} (reason, recorded_by, run_id, job_version, format, "
            "server_major, schemas, fingerprint, migrations, description, catalog_digest) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)",
            (reason, user, run_id, __version__, fmt, server_major, schemas, digest, migrations,
             value, catalog_digest))
        conn.execute(f"DELETE FROM {TABLE} WHERE id <= (SELECT max(id) - %s FROM {TABLE})",
                     (KEEP,))


def set_in_flight(conn: psycopg.Connection[Any], note: str | None) -> None:
    conn.execute(f"UPDATE {TABLE} SET in_flight = %s "
                 f"WHERE id = (SELECT max(id) FROM {TABLE})", (note,))


def applied_ids(conn: psycopg.Connection[Any]) -> list[str]:
    """The applied migrations as the tracking table says right now (in this transaction)."""
    row = conn.execute("SELECT to_regclass('_yoyo_migration') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return []
    return [r[0] for r in conn.execute(
        "SELECT migration_id FROM _yoyo_migration ORDER BY migration_id").fetchall()]
