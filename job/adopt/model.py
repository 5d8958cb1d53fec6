"""The one seam every importer implements, and the facts it hands to the pipeline.

An importer knows one tool: where its files are and what they mean, what its history table
says is applied, and which lock it takes. It never writes anything and never decides anything:
the pipeline (``job.adopt.commands``) matches files to recorded entries, converts, writes and
marks, the same way for every tool. Every importer passes ``tests/adopt/test_importer_contract``.

Rules for implementers (after golang-migrate's driver contract): read exactly what the tool
itself would read; don't correct the user's input or guess; when the tool would refuse (a dirty
database, a failed migration, a file it cannot load), raise ``ConfigError`` (bad files, exit 2)
or ``IntegrityRefusal`` (the database's history is half-applied or the files changed since they
were applied, exit 5) naming the file or row and the tool's own command that fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class SourceMigration:
    """One migration as the old tool sees it in its files."""

    key: str  # what the tool's history table records for it (version, name, file name)
    name: str  # human name, becomes the slug of our id
    path: str  # the file it came from, for messages and the converted file's header
    up: str | None  # SQL to apply; None: written in code (JavaScript, Java), not convertible
    down: str | None = None  # SQL that reverts it (rollback script), if the tool has one
    transactional: bool = True  # as the tool would run it (its own declaration)
    declared: str = ""  # where a non-transactional declaration came from, for the header


@dataclass(frozen=True)
class Recorded:
    """One migration the old tool's history table says is applied."""

    key: str
    label: str  # as the table shows it, for reports
    code: bool = False  # the table says it was a code migration (e.g. Flyway JDBC)


@dataclass
class History:
    """What the old tool's table says, in the order the tool applied it."""

    table: str  # schema-qualified, as read
    exists: bool
    recorded: list[Recorded] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth reporting (e.g. a baseline row)


@dataclass(frozen=True)
class ToolLock:
    """How the old tool keeps two of its runs apart, so an import can refuse while one runs."""

    name: str  # "Flyway's advisory lock", for messages
    advisory_keys: tuple[int, ...] = ()  # session/xact advisory locks (bigint form)
    held_sql: Any = None  # a query (str or psycopg sql) returning a row while held (knex)
    # A table whose rows the tool updates inside its own, still open, transaction while it
    # runs (so the committed rows say "free"): probed with FOR SHARE NOWAIT.
    busy_table: TableName | None = None


@dataclass(frozen=True)
class TableName:
    schema: str
    name: str

    def sql(self) -> Any:
        from psycopg import sql

        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


class Importer(Protocol):
    """Reads one tool's files and history table. Implemented once per tool in job/adopt/."""

    tool: str  # the --from name
    default_source: str  # the tool's conventional directory, relative to the working dir
    default_table: str  # the tool's default history table name
    code_only: bool  # its migrations are code (knex, TypeORM): always adopted by a baseline
    deploy_command: str  # what the team ran at deploy time, for the printed next steps

    def read_files(self, source: Path) -> list[SourceMigration]:
        """Every migration in ``source`` in the order the tool would apply them on an empty
        database. Raise ConfigError for what the tool itself would refuse or we cannot keep."""
        ...

    def read_history(self, conn: psycopg.Connection[Any], table: TableName,
                     files: Sequence[SourceMigration]) -> History:
        """What ``table`` says is applied. ``files`` lets tools that record only a high-water
        mark (golang-migrate) or a baseline (Flyway) expand it to keys; checksums recorded by
        the tool are compared here."""
        ...

    def lock(self, table: TableName, database: str) -> ToolLock | None:
        """The tool's lock for this history table in this database, or None if it has none."""
        ...
