"""Knex and TypeORM: migrations written in JavaScript/TypeScript, adopted by a baseline.

Their migrations are code, so they cannot be converted: the import takes a baseline of the
current schema and marks it, after checking that every migration file (when --source is given)
is recorded as applied, so nothing is left behind.

Knex (knex/knex, MIT; version 3 runs for real in our tests; lib/migrations/migrate/
table-creator.js and Migrator.js): ``knex_migrations (id serial, name varchar(255), batch
integer, migration_time timestamptz)``, name = the file name with its extension;
``<table>_lock (index serial, is_locked integer)``: ``Migrator._lockMigrations`` sets
``is_locked = 1`` where it is 0 while a ``knex migrate`` runs (a row, not an advisory lock).

TypeORM (typeorm/typeorm, MIT; 1.x runs for real in our tests): ``migrations (id serial, timestamp
bigint not null, name varchar not null)``, name = the migration class name, which ends with the
timestamp that also starts the file name (``1700000000000-CreateUsers.ts``). No lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job.adopt.common import numeric_prefix, require_columns, source_dir
from job.adopt.model import History, Recorded, SourceMigration, TableName, ToolLock
from job.adopt.node_pg_migrate import CODE_SUFFIXES

if TYPE_CHECKING:
    import psycopg


def _code_files(source: Path, tool: str) -> list[Path]:
    root = source_dir(source, tool)
    return sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(CODE_SUFFIXES)
                  and not p.name.endswith(".d.ts") and not p.name.startswith("."))


class Knex:
    tool = "knex"
    default_source = "migrations"
    default_table = "knex_migrations"
    code_only = True
    deploy_command = "knex migrate:latest"

    def read_files(self, source: Path) -> list[SourceMigration]:
        return [SourceMigration(key=p.name, name=p.stem, path=str(p), up=None)
                for p in _code_files(source, self.tool)]

    def read_history(self, conn: psycopg.Connection[Any], table: TableName,
                     files: Sequence[SourceMigration]) -> History:
        history = History(str(table), require_columns(conn, table, self.tool,
                                                      {"name", "batch", "migration_time"}))
        if not history.exists:
            return history
        from psycopg import sql

        rows = conn.execute(sql.SQL("SELECT name, batch FROM {} ORDER BY id").format(
            table.sql())).fetchall()
        history.recorded = [Recorded(r[0], f"{r[0]} (batch {r[1]})", code=True) for r in rows]
        return history

    def lock(self, table: TableName, database: str) -> ToolLock:
        from psycopg import sql

        lock_table = TableName(table.schema, table.name + "_lock")
        query = sql.SQL("SELECT 1 FROM {} WHERE is_locked = 1").format(lock_table.sql())
        # knex updates the row inside the transaction of the whole batch when every migration
        # is transactional: the committed row still says 0, but the row is locked.
        return ToolLock(f"knex's migration lock ({lock_table}.is_locked)", held_sql=query,
                        busy_table=lock_table)


class TypeORM:
    tool = "typeorm"
    default_source = "src/migrations"
    default_table = "migrations"
    code_only = True
    deploy_command = "typeorm migration:run"

    def read_files(self, source: Path) -> list[SourceMigration]:
        out = []
        for p in _code_files(source, self.tool):
            stamp = numeric_prefix(p.name)
            out.append(SourceMigration(key=str(stamp) if stamp is not None else p.stem,
                                       name=p.stem, path=str(p), up=None))
        return out

    def read_history(self, conn: psycopg.Connection[Any], table: TableName,
                     files: Sequence[SourceMigration]) -> History:
        history = History(str(table), require_columns(conn, table, self.tool,
                                                      {"id", "timestamp", "name"}))
        if not history.exists:
            return history
        from psycopg import sql

        rows = conn.execute(sql.SQL("SELECT timestamp, name FROM {} ORDER BY id").format(
            table.sql())).fetchall()
        history.recorded = [Recorded(str(r[0]), str(r[1]), code=True) for r in rows]
        return history

    def lock(self, table: TableName, database: str) -> ToolLock | None:
        return None
