"""node-pg-migrate: SQL (or JavaScript/TypeScript) files and the pgmigrations table.

As its source defines it (salsita/node-pg-migrate, MIT; version 9 runs for real in our tests):
- every file of the directory not starting with a dot is a migration, sorted by its numeric
  prefix, then by name; its name in the table is the file name without the extension (the
  grouped SQL loader pairs ``x.up.sql``/``x.down.sql`` under the name ``x``);
- a SQL file's up part starts at a line matching ``^\\s*--[\\s-]*up\\s+migration`` (case
  insensitive, "-- Up Migration") and its down part at "-- Down Migration"; without the up
  marker the whole file is the up part; SQL migrations always run in a transaction;
- history: ``pgmigrations (id serial primary key, name varchar(255) not null, run_on timestamp
  not null)``, one row per applied migration;
- lock (src/runner.ts, read in the installed 9.0.0 bundle): ``pg_advisory_lock`` or
  ``pg_try_advisory_lock`` of ``PG_MIGRATE_LOCK_ID = 7241865325823964`` ("random but
  well-known identifier shared by all instances"; a lock-value option can change it);
- sections: src/sqlMigration.ts ``createMigrationCommentRegex``; names: src/migration.ts.
JavaScript/TypeScript migrations cannot be converted: a history with any is adopted by a
baseline of the current schema instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job.adopt.common import numeric_prefix, read_text, require_columns, source_dir
from job.adopt.model import History, Recorded, SourceMigration, TableName, ToolLock
from job.errors import ConfigError

if TYPE_CHECKING:
    import psycopg

LOCK_ID = 7241865325823964
CODE_SUFFIXES = (".js", ".cjs", ".mjs", ".ts", ".cts", ".mts")
_UP = re.compile(r"^\s*--[\s-]*up\s+migration", re.I | re.M)
_DOWN = re.compile(r"^\s*--[\s-]*down\s+migration", re.I | re.M)


def sections(text: str) -> tuple[str, str | None]:
    """(up, down) exactly as node-pg-migrate's getActions slices them (markers included)."""
    up_at = m.start() if (m := _UP.search(text)) else -1
    down_at = m.start() if (m := _DOWN.search(text)) else -1
    up = text[up_at:down_at if down_at > up_at else len(text)] if up_at >= 0 else text
    down = None
    if down_at >= 0:
        down = text[down_at:up_at if up_at > down_at else len(text)]
    return up, down


def _sort_key(name: str) -> tuple[int, str]:
    prefix = numeric_prefix(name)
    return (prefix if prefix is not None else -1, name)


class NodePgMigrate:
    tool = "node-pg-migrate"
    default_source = "migrations"
    default_table = "pgmigrations"
    code_only = False
    deploy_command = "node-pg-migrate up"

    def read_files(self, source: Path) -> list[SourceMigration]:
        root = source_dir(source, self.tool)
        groups: dict[str, dict[str, Path]] = {}
        for path in root.iterdir():
            if path.name.startswith(".") or not path.is_file():
                continue
            name, kind = path.name, "single"
            if name.endswith(".up.sql"):
                name, kind = name[:-7], "up"
            elif name.endswith(".down.sql"):
                name, kind = name[:-9], "down"
            elif name.endswith(".sql"):
                name = name[:-4]
            elif name.endswith(CODE_SUFFIXES):
                name, kind = name.rsplit(".", 1)[0], "code"
            else:
                continue
            group = groups.setdefault(name, {})
            if kind in group or (kind in ("single", "code") and group):
                raise ConfigError(f"{path}: node-pg-migrate migration {name!r} has more than "
                                  "one file", file=str(path))
            group[kind] = path
        out = []
        for name in sorted(groups, key=_sort_key):
            group = groups[name]
            if "code" in group:
                out.append(SourceMigration(key=name, name=name, path=str(group["code"]),
                                           up=None))
                continue
            if "single" in group:
                up, down = sections(read_text(group["single"]))
                path = group["single"]
            elif "up" in group:
                path = group["up"]
                up = read_text(path)
                down = read_text(group["down"]) if "down" in group else None
            else:
                raise ConfigError(f"{group['down']}: a .down.sql without its .up.sql",
                                  file=str(group["down"]))
            label = re.sub(r"^\d+[_-]?", "", name) or name
            out.append(SourceMigration(key=name, name=label, path=str(path), up=up, down=down))
        return out

    def read_history(self, conn: psycopg.Connection[Any], table: TableName,
                     files: Sequence[SourceMigration]) -> History:
        history = History(str(table), require_columns(conn, table, self.tool,
                                                      {"name", "run_on"}))
        if not history.exists:
            return history
        from psycopg import sql

        rows = conn.execute(sql.SQL("SELECT name, run_on FROM {} ORDER BY run_on, id").format(
            table.sql())).fetchall()
        history.recorded = [Recorded(r[0], f"{r[0]} (run_on {r[1]:%Y-%m-%d %H:%M:%S})")
                            for r in rows]
        return history

    def lock(self, table: TableName, database: str) -> ToolLock:
        return ToolLock(f"node-pg-migrate's advisory lock (key {LOCK_ID})", (LOCK_ID,))
