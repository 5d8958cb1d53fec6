"""Flyway: ``V<version>__<description>.sql`` (+ ``U...`` undo scripts) and flyway_schema_history.

What Flyway itself does, as its source defines it (flyway/flyway, Apache-2.0; classes under
flyway-database/flyway-database-postgresql/src/main/java/org/flywaydb/database/postgresql/ and
flyway-core/src/main/java/org/flywaydb/core/internal/):
- history table (``PostgreSQLDatabase.getRawCreateScript``): installed_rank INT (primary key,
  the order of application), version VARCHAR(50) (NULL for repeatables), description, type
  (SQL, JDBC, BASELINE, SCHEMA, UNDO_SQL, DELETE, ...), script, checksum INTEGER, installed_by,
  installed_on, execution_time, success BOOLEAN;
- checksum (``ChecksumCalculator``): CRC-32 of the file's lines without their line breaks (so it
  ignores line endings) and without a leading BOM, UTF-8, stored as a signed 32-bit int;
- versions: ``_`` in a file name means ``.``, parts compare as integers, trailing zeros do not
  count (1.0 == 1);
- lock (``PostgreSQLAdvisoryLockTemplate``: ``LOCK_MAGIC_NUM + discriminator``;
  ``PostgreSQLConnection.lock``: discriminator = ``table.toString().hashCode()``;
  ``SchemaObject.toString`` = ``database.quote(schema, name)``): advisory key
  ``0x466C79776179`` ("Flyway" = 77431708279161) plus the Java ``String.hashCode`` of
  ``"schema"."flyway_schema_history"``; ``pg_try_advisory_lock`` (session) or
  ``pg_try_advisory_xact_lock`` (``postgresql.transactional.lock``), both show in pg_locks;
- per-script configuration ``V1__x.sql.conf`` with ``executeInTransaction=false``.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job.adopt.common import read_text, require_columns, source_dir
from job.adopt.model import History, Recorded, SourceMigration, TableName, ToolLock
from job.errors import ConfigError, IntegrityRefusal

if TYPE_CHECKING:
    import psycopg

_VERSIONED = re.compile(r"^(?P<kind>[VU])(?P<ver>\d+(?:[._]\d+)*)__(?P<desc>.+)\.sql$")
_REPEATABLE = re.compile(r"^R__.+\.sql$")
LOCK_MAGIC = 0x466C79776179  # "Flyway"


def normalize_version(text: str) -> str:
    parts = [int(p) for p in re.split(r"[._]", text.strip())]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return ".".join(str(p) for p in parts)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def checksum(text: str) -> int:
    """Flyway's checksum of a script (CRC-32 over its lines without line breaks)."""
    text = text.removeprefix("\ufeff")
    crc = zlib.crc32("".join(re.split(r"\r\n|\r|\n", text)).encode("utf-8"))
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def java_string_hash(text: str) -> int:
    data = text.encode("utf-16-be")  # Java hashes UTF-16 code units
    h = 0
    for unit in struct.unpack(f">{len(data) // 2}H", data):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def _script_config(path: Path) -> dict[str, str]:
    conf = path.with_name(path.name + ".conf")
    if not conf.exists():
        return {}
    values = {}
    for line in read_text(conf).splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


class Flyway:
    tool = "flyway"
    default_source = "sql"
    default_table = "flyway_schema_history"
    code_only = False
    deploy_command = "flyway migrate"

    def read_files(self, source: Path) -> list[SourceMigration]:
        root = source_dir(source, self.tool)
        ups: dict[str, tuple[Path, str]] = {}
        undos: dict[str, Path] = {}
        repeatable = []
        for path in sorted(p for p in root.rglob("*.sql") if p.is_file()):
            if _REPEATABLE.match(path.name):
                repeatable.append(path)
                continue
            m = _VERSIONED.match(path.name)
            if not m:
                continue  # callbacks (beforeMigrate.sql, ...) and other files Flyway ignores
            version = normalize_version(m.group("ver"))
            other = (ups[version][0] if version in ups else None) if m.group("kind") == "V" \
                else undos.get(version)
            if other is not None:
                raise ConfigError(f"{path}: Flyway version {version} also in {other} (Flyway "
                                  "refuses duplicate versions)", file=str(path))
            if m.group("kind") == "V":
                ups[version] = (path, m.group("desc").replace("_", " "))
            else:
                undos[version] = path
        if repeatable:
            names = ", ".join(str(p) for p in repeatable[:5])
            raise ConfigError(
                f"repeatable Flyway migrations cannot be imported: {names}. Flyway re-runs an "
                "R__ script whenever its checksum changes; migrate-job applies each migration "
                "exactly once. Fold their current content into a versioned V migration (or a "
                "`new` migration after the import), remove the R__ files, then import again.")
        out = []
        for version in sorted(ups, key=_version_key):
            path, desc = ups[version]
            conf = _script_config(path)
            in_tx = conf.get("executeInTransaction", "true").strip().lower() != "false"
            undo = undos.get(version)
            out.append(SourceMigration(
                key=version, name=desc, path=str(path), up=read_text(path),
                down=read_text(undo) if undo else None, transactional=in_tx,
                declared="" if in_tx else f"{path.name}.conf: executeInTransaction=false"))
        return out

    def read_history(self, conn: psycopg.Connection[Any], table: TableName,
                     files: Sequence[SourceMigration]) -> History:
        needed = {"installed_rank", "version", "type", "script", "checksum", "success"}
        history = History(str(table), require_columns(conn, table, self.tool, needed))
        if not history.exists:
            return history
        from psycopg import sql

        rows = conn.execute(sql.SQL(
            "SELECT installed_rank, version, type, script, checksum, success FROM {} "
            "ORDER BY installed_rank").format(table.sql())).fetchall()
        by_key = {f.key: f for f in files}
        applied: dict[str, Recorded] = {}
        baseline: str | None = None
        for rank, version, kind, script, recorded_sum, success in rows:
            kind = (kind or "").upper()
            if not success:
                raise IntegrityRefusal(
                    f"{table} records a failed migration (installed_rank {rank}, {script}): "
                    "Flyway itself refuses to migrate until it is fixed. Repair the database, "
                    "run `flyway repair`, then import again.", table=str(table), script=script)
            if kind == "SCHEMA":
                continue
            if version is None:
                history.notes.append(f"repeatable migration {script} is recorded (rank {rank});"
                                     " its effect is in the schema but it is not converted")
                continue
            key = normalize_version(version)
            if kind == "BASELINE":
                baseline = key
                continue
            if kind.startswith("UNDO") or kind == "DELETE":
                applied.pop(key, None)
                continue
            src = by_key.get(key)
            if kind == "SQL" and src is not None and src.up is not None \
                    and recorded_sum is not None and checksum(src.up) != recorded_sum:
                raise IntegrityRefusal(
                    f"{src.path} changed since Flyway applied it (checksum {recorded_sum} "
                    f"recorded in {table}, {checksum(src.up)} now): the converted file would "
                    "not be what ran. Restore the file as applied (or, if the edit is "
                    "intended, run `flyway repair`), then import again.", file=src.path)
            applied.pop(key, None)
            applied[key] = Recorded(key, f"{script} (rank {rank})", code=kind != "SQL")
        if baseline is not None:
            covered = [f for f in files if _version_key(f.key) <= _version_key(baseline)
                       and f.key not in applied]
            history.notes.append(
                f"Flyway baseline at version {baseline}: this database was not built by the "
                f"{len(covered)} migration(s) up to it; they count as applied here, as for Flyway")
            below = [Recorded(f.key, f"{Path(f.path).name} (below baseline {baseline})")
                     for f in covered]
            history.recorded = below + list(applied.values())
        else:
            history.recorded = list(applied.values())
        return history

    def lock(self, table: TableName, database: str) -> ToolLock:
        quoted = '"{}"."{}"'.format(table.schema.replace('"', '""'),
                                    table.name.replace('"', '""'))
        key = LOCK_MAGIC + java_string_hash(quoted)
        return ToolLock(f"Flyway's advisory lock on {table} (key {key})", (key,))
