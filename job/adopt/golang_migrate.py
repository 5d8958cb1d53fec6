"""golang-migrate: ``<version>_<title>.up.sql`` / ``.down.sql`` and schema_migrations.

As its source defines it (golang-migrate/migrate, MIT):
- file names (source/parse.go, ``DefaultParse``): ``^([0-9]+)_(.*)\\.(down|up)\\.(.*)$``, version an unsigned
  integer, applied in ascending order;
- history table (``database/postgres/postgres.go`` ensureVersionTable):
  ``schema_migrations (version bigint not null primary key, dirty boolean not null)`` holding ONE
  row, the current version: every version up to it is applied. ``dirty`` means a migration failed
  half-way; the tool refuses to run until someone runs ``migrate force``.
- each file runs as one multi-statement query (no declared transaction mode; files often carry
  their own BEGIN/COMMIT, which the converter handles);
- lock (``database/util.go`` GenerateAdvisoryLockId): ``pg_advisory_lock`` on
  ``crc32(IEEE)(name0 + "\\x00" + name1 ...) * 1486364155`` (uint32 arithmetic). The names are
  the database name, the schema and the table since the multi-schema change (earlier releases:
  the database name alone, then database + schema), and the database name is the URL path
  (``/dbname``) when the CLI opened the URL itself but ``current_database()`` through
  WithInstance, so every variant is checked.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job.adopt.common import read_text, require_columns, source_dir
from job.adopt.model import History, Recorded, SourceMigration, TableName, ToolLock
from job.errors import ConfigError, IntegrityRefusal

if TYPE_CHECKING:
    import psycopg

_FILE = re.compile(r"^([0-9]+)_(.*)\.(down|up)\.sql$")
_SALT = 1486364155


def advisory_lock_id(database: str, *names: str) -> int:
    data = "\x00".join([database, *names]).encode("utf-8")
    return (zlib.crc32(data) * _SALT) & 0xFFFFFFFF


class GolangMigrate:
    tool = "golang-migrate"
    default_source = "migrations"
    default_table = "schema_migrations"
    code_only = False
    deploy_command = "migrate up"

    def read_files(self, source: Path) -> list[SourceMigration]:
        root = source_dir(source, self.tool)
        found: dict[int, dict[str, Path]] = {}
        titles: dict[int, str] = {}
        for path in sorted(p for p in root.iterdir() if p.is_file()):
            m = _FILE.match(path.name)
            if not m:
                continue
            version, title, direction = int(m.group(1)), m.group(2), m.group(3)
            pair = found.setdefault(version, {})
            if direction in pair:
                raise ConfigError(f"{path}: golang-migrate version {version} has two "
                                  f"{direction} files ({pair[direction].name}); it refuses that "
                                  "too", file=str(path))
            pair[direction] = path
            titles.setdefault(version, title)
        out = []
        for version in sorted(found):
            pair = found[version]
            if "up" not in pair:
                raise ConfigError(f"{pair['down']}: a down file without its up file",
                                  file=str(pair["down"]))
            down = pair.get("down")
            out.append(SourceMigration(
                key=str(version), name=titles[version], path=str(pair["up"]),
                up=read_text(pair["up"]), down=read_text(down) if down else None))
        return out

    def read_history(self, conn: psycopg.Connection[Any], table: TableName,
                     files: Sequence[SourceMigration]) -> History:
        history = History(str(table), require_columns(conn, table, self.tool,
                                                      {"version", "dirty"}))
        if not history.exists:
            return history
        from psycopg import sql

        row = conn.execute(sql.SQL("SELECT version, dirty FROM {} LIMIT 1").format(
            table.sql())).fetchone()
        if row is None:
            return history  # NilVersion: nothing applied
        version, dirty = int(row[0]), bool(row[1])
        if dirty:
            raise IntegrityRefusal(
                f"{table} marks version {version} dirty: that migration failed half-way and "
                "golang-migrate itself refuses to run until it is resolved. Fix the database by "
                f"hand, run `migrate force {version}` (or the previous version), then import "
                "again.", table=str(table), version=version)
        history.recorded = [Recorded(f.key, f"{Path(f.path).name} (<= version {version})")
                            for f in files if int(f.key) <= version]
        if str(version) not in {f.key for f in files}:
            history.recorded.append(Recorded(str(version), f"version {version}"))
        return history

    def lock(self, table: TableName, database: str) -> ToolLock:
        keys: list[int] = []
        for db in (database, "/" + database):
            for names in ((table.schema, table.name), (table.schema,), ()):
                key = advisory_lock_id(db, *names)
                if key not in keys:
                    keys.append(key)
        return ToolLock(f"golang-migrate's advisory lock on {table} (key {keys[0]})",
                        tuple(keys))
