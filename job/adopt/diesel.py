"""Diesel: ``migrations/<version>_<name>/up.sql`` (+ down.sql, metadata.toml).

As its source defines it (diesel-rs/diesel, MIT/Apache-2.0): every sub-directory not starting
with a dot must hold an up.sql (``valid_sql_migration_directory``); the version is the part of
the directory name before the first ``_`` with ``-`` removed (``version_from_string``:
``2024-01-02-030405_create_users`` -> ``20240102030405``); migrations run in version order;
``metadata.toml`` may say ``run_in_transaction = false``. History (``setup_migration_table.sql``):
``__diesel_schema_migrations (version varchar(50) primary key not null, run_on timestamp not null
default current_timestamp)``, one row per applied version. Diesel takes no lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job.adopt.common import read_text, require_columns, source_dir
from job.adopt.model import History, Recorded, SourceMigration, TableName, ToolLock
from job.errors import ConfigError

if TYPE_CHECKING:
    import psycopg


def version_of(directory_name: str) -> str:
    return directory_name.split("_", 1)[0].replace("-", "")


class Diesel:
    tool = "diesel"
    default_source = "migrations"
    default_table = "__diesel_schema_migrations"
    code_only = False
    deploy_command = "diesel migration run"

    def read_files(self, source: Path) -> list[SourceMigration]:
        import tomllib

        root = source_dir(source, self.tool)
        found: dict[str, SourceMigration] = {}
        for path in sorted(p for p in root.iterdir()
                           if p.is_dir() and not p.name.startswith(".")):
            up = path / "up.sql"
            if not up.is_file():
                raise ConfigError(f"{path}: no up.sql (Diesel refuses this directory too: "
                                  "UnknownMigrationFormat)", file=str(path))
            version = version_of(path.name)
            if version in found:
                raise ConfigError(f"{path}: Diesel version {version} also in "
                                  f"{Path(found[version].path).parent}", file=str(path))
            in_tx, declared = True, ""
            meta = path / "metadata.toml"
            if meta.is_file():
                try:
                    data = tomllib.loads(read_text(meta))
                except tomllib.TOMLDecodeError as exc:
                    raise ConfigError(f"{meta}: {exc}", file=str(meta)) from None
                if data.get("run_in_transaction") is False:
                    in_tx, declared = False, f"{path.name}/metadata.toml: run_in_transaction = false"
            down = path / "down.sql"
            name = path.name.split("_", 1)[1] if "_" in path.name else path.name
            found[version] = SourceMigration(
                key=version, name=name, path=str(up), up=read_text(up),
                down=read_text(down) if down.is_file() else None, transactional=in_tx,
                declared=declared)
        return [found[v] for v in sorted(found)]

    def read_history(self, conn: psycopg.Connection[Any], table: TableName,
                     files: Sequence[SourceMigration]) -> History:
        history = History(str(table), require_columns(conn, table, self.tool,
                                                      {"version", "run_on"}))
        if not history.exists:
            return history
        from psycopg import sql

        rows = conn.execute(sql.SQL("SELECT version, run_on FROM {} ORDER BY version").format(
            table.sql())).fetchall()
        history.recorded = [Recorded(r[0], f"version {r[0]} (run_on {r[1]:%Y-%m-%d %H:%M:%S})")
                            for r in rows]
        return history

    def lock(self, table: TableName, database: str) -> ToolLock | None:
        return None
