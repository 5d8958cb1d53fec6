"""Prisma Migrate: ``prisma/migrations/<name>/migration.sql`` and _prisma_migrations.

As its source defines it (prisma/prisma-engines, Apache-2.0):
- history table (schema-engine/connectors/sql-schema-connector/src/flavour/postgres.rs,
  ``create_migrations_table``):
  ``_prisma_migrations (id varchar(36) primary key, checksum varchar(64) not null, finished_at
  timestamptz, migration_name varchar(255) not null, logs text, rolled_back_at timestamptz,
  started_at timestamptz not null default now(), applied_steps_count integer not null default
  0)``; a migration is applied when a row for it has ``finished_at`` set and ``rolled_back_at``
  NULL; a row with neither is a failed migration, which makes ``migrate deploy`` refuse (P3009)
  until ``prisma migrate resolve``;
- checksum (schema-engine/connectors/schema-connector/src/checksum.rs): lowercase hex
  SHA-256 of migration.sql (older engines did not zero-pad each byte),
  matched whatever its line endings (LF or CRLF);
- migrations are the sub-directories in name order; Prisma has no down migrations;
- lock: ``SELECT pg_advisory_lock(72707369)`` ("a unique number we chose to identify
  Migrate"), session level, with a 10 s timeout (same file, ``acquire_lock``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job.adopt.common import read_text, require_columns, source_dir
from job.adopt.model import History, Recorded, SourceMigration, TableName, ToolLock
from job.errors import ConfigError, IntegrityRefusal

if TYPE_CHECKING:
    import psycopg

LOCK_ID = 72707369


def checksum_matches(script: str, recorded: str) -> bool:
    variants = {script, script.replace("\r\n", "\n"), script.replace("\n", "\r\n")}
    for text in variants:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        if recorded in (digest.hex(), "".join(f"{b:x}" for b in digest)):  # old: not zero-padded
            return True
    return False


class Prisma:
    tool = "prisma"
    default_source = "prisma/migrations"
    default_table = "_prisma_migrations"
    code_only = False
    deploy_command = "prisma migrate deploy"

    def read_files(self, source: Path) -> list[SourceMigration]:
        root = source_dir(source, self.tool)
        lock = root / "migration_lock.toml"
        if lock.exists():
            import tomllib

            try:
                provider = tomllib.loads(read_text(lock)).get("provider")
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{lock}: {exc}", file=str(lock)) from None
            if provider not in (None, "postgresql", "postgres"):
                raise ConfigError(f"{lock}: provider {provider!r}: only PostgreSQL histories "
                                  "can be imported", file=str(lock))
        out = []
        for path in sorted(p for p in root.iterdir() if p.is_dir()):
            script = path / "migration.sql"
            if not script.is_file():
                raise ConfigError(f"{path}: no migration.sql (Prisma would refuse this "
                                  "directory too)", file=str(path))
            name = path.name
            label = name.split("_", 1)[1] if "_" in name and name.split("_", 1)[0].isdigit() \
                else name
            out.append(SourceMigration(key=name, name=label, path=str(script),
                                       up=read_text(script)))
        return out

    def read_history(self, conn: psycopg.Connection[Any], table: TableName,
                     files: Sequence[SourceMigration]) -> History:
        needed = {"migration_name", "checksum", "finished_at", "rolled_back_at", "started_at"}
        history = History(str(table), require_columns(conn, table, self.tool, needed))
        if not history.exists:
            return history
        from psycopg import sql

        rows = conn.execute(sql.SQL(
            "SELECT migration_name, checksum, finished_at, rolled_back_at FROM {} "
            "ORDER BY started_at, finished_at NULLS LAST").format(table.sql())).fetchall()
        by_key = {f.key: f for f in files}
        seen: set[str] = set()
        for name, recorded_sum, finished, rolled_back in rows:
            if rolled_back is not None or name in seen:
                continue
            if finished is None:
                raise IntegrityRefusal(
                    f"{table} records migration {name} as failed (started, never finished, not "
                    "rolled back): `prisma migrate deploy` refuses this too (P3009). Fix the "
                    f"database, run `prisma migrate resolve --applied {name}` or "
                    f"`--rolled-back {name}`, then import again.", table=str(table),
                    migration=name)
            src = by_key.get(name)
            if src is not None and src.up is not None and \
                    not checksum_matches(src.up, recorded_sum):
                raise IntegrityRefusal(
                    f"{src.path} changed since Prisma applied it (its SHA-256 differs from "
                    f"{table}.checksum): the converted file would not be what ran. Restore the "
                    "file as applied, then import again.", file=src.path)
            seen.add(name)
            when = f"{finished:%Y-%m-%d %H:%M:%S}"
            history.recorded.append(Recorded(name, f"{name} (finished {when})"))
        return history

    def lock(self, table: TableName, database: str) -> ToolLock:
        return ToolLock(f"Prisma Migrate's advisory lock (key {LOCK_ID})", (LOCK_ID,))
