"""dbmate: ``<version>_<name>.sql`` with ``-- migrate:up`` / ``-- migrate:down`` sections.

As its source defines it (amacneil/dbmate, MIT; the npm package runs the real binary in our
tests): the version is the leading digits of the file name; the up section starts at a line
``-- migrate:up`` and ends at ``-- migrate:down``; options follow the marker on the same line
(``-- migrate:up transaction:false`` runs that section outside a transaction); nothing but
comments may precede the up marker. History: ``schema_migrations (version varchar(128) primary
key)``, one row per applied version. dbmate takes no lock on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job.adopt.common import read_text, require_columns, source_dir
from job.adopt.model import History, Recorded, SourceMigration, TableName, ToolLock
from job.errors import ConfigError

if TYPE_CHECKING:
    import psycopg

_FILE = re.compile(r"^(\d+)_?(.*)\.sql$")
_UP = re.compile(r"^--\s*migrate:up(?:[ \t]+(?P<opts>[^\n]*))?[ \t]*$", re.M)
_DOWN = re.compile(r"^--\s*migrate:down(?:[ \t]+(?P<opts>[^\n]*))?[ \t]*$", re.M)


def _options(text: str | None) -> dict[str, str]:
    opts = {}
    for pair in (text or "").split():
        key, sep, value = pair.partition(":")
        if sep:
            opts[key] = value
    return opts


def parse(text: str, path: Path) -> tuple[str, str | None, bool]:
    """(up SQL, down SQL or None, up runs in a transaction)."""
    up = _UP.search(text)
    if up is None:
        raise ConfigError(f"{path}: no '-- migrate:up' line (dbmate requires one)", file=str(path))
    down = _DOWN.search(text, up.end())
    if _DOWN.search(text[:up.start()]):
        raise ConfigError(f"{path}: '-- migrate:down' before '-- migrate:up'", file=str(path))
    before = [ln for ln in text[:up.start()].splitlines()
              if ln.strip() and not ln.lstrip().startswith("--")]
    if before:
        raise ConfigError(f"{path}: statements before '-- migrate:up' (dbmate refuses them)",
                          file=str(path))
    up_sql = text[up.end():down.start() if down else len(text)]
    down_sql = text[down.end():] if down else None
    in_tx = _options(up.group("opts")).get("transaction", "true") != "false"
    return up_sql.strip("\n") + "\n", (down_sql.strip("\n") + "\n") if down_sql else None, in_tx


class Dbmate:
    tool = "dbmate"
    default_source = "db/migrations"
    default_table = "schema_migrations"
    code_only = False
    deploy_command = "dbmate up"

    def read_files(self, source: Path) -> list[SourceMigration]:
        root = source_dir(source, self.tool)
        out = []
        seen: dict[str, Path] = {}
        for path in sorted(p for p in root.iterdir() if p.is_file()):
            m = _FILE.match(path.name)
            if not m:
                continue
            version = m.group(1)
            if version in seen:
                raise ConfigError(f"{path}: dbmate version {version} also in {seen[version]}",
                                  file=str(path))
            seen[version] = path
            up, down, in_tx = parse(read_text(path), path)
            out.append(SourceMigration(
                key=version, name=m.group(2) or version, path=str(path), up=up, down=down,
                transactional=in_tx,
                declared="" if in_tx else f"{path.name}: -- migrate:up transaction:false"))
        # dbmate sorts by file name; versions of equal length sort the same way numerically.
        return out

    def read_history(self, conn: psycopg.Connection[Any], table: TableName,
                     files: Sequence[SourceMigration]) -> History:
        history = History(str(table), require_columns(conn, table, self.tool, {"version"}))
        if not history.exists:
            return history
        cols = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s AND "
            "table_name = %s AND column_name = 'dirty'", (table.schema, table.name)).fetchone()
        if cols and cols[0]:
            raise ConfigError(f"{table} has a 'dirty' column: it is golang-migrate's history "
                              "table, not dbmate's (use --from golang-migrate)")
        from psycopg import sql

        rows = conn.execute(sql.SQL("SELECT version FROM {} ORDER BY version").format(
            table.sql())).fetchall()
        history.recorded = [Recorded(str(r[0]), f"version {r[0]}") for r in rows]
        return history

    def lock(self, table: TableName, database: str) -> ToolLock | None:
        return None
