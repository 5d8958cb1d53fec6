"""One database history per tool, built the way that tool builds it.

The same three migrations (an enum and a table; a column and a SQL function; an index built
CONCURRENTLY where the tool can declare that) go through each tool. node-pg-migrate, knex,
TypeORM and dbmate run for real (npm). Prisma, Flyway, golang-migrate and Diesel cannot run on
this machine (their engines/binaries come from outside the registries), so their runs are
reproduced exactly as their source does it: the same history-table DDL, the same rows, the same
checksums, the same transaction handling (see each builder's comment for the source it follows).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from job.adopt import flyway
from tests.adopt.helpers import node_tool, run_node_tool

M1 = ("CREATE TYPE status AS ENUM ('new', 'done');\n"
      "CREATE TABLE items (\n"
      "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
      "    name text NOT NULL,\n"
      "    status status NOT NULL DEFAULT 'new'\n"
      ");\n")
M1_DOWN = "DROP TABLE items;\nDROP TYPE status;\n"
M2 = ("ALTER TABLE items ADD COLUMN note text;\n"
      "CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql\n"
      "    AS $$ SELECT count(*) FROM items $$;\n")
M2_DOWN = "DROP FUNCTION item_count();\nALTER TABLE items DROP COLUMN note;\n"
M3_CONCURRENT = "CREATE INDEX CONCURRENTLY items_name_idx ON items (name);\n"
M3_PLAIN = "CREATE INDEX items_name_idx ON items (name);\n"
M3_DOWN = "DROP INDEX items_name_idx;\n"
M4 = "CREATE TABLE later (id int);\n"
M4_DOWN = "DROP TABLE later;\n"


def _exec(url: str, sql: str) -> None:
    """One multi-statement simple query, autocommit: how Prisma's raw_cmd and golang-migrate's
    Exec send a whole file (an implicit transaction when it holds several statements)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@dataclass
class Scenario:
    tool: str
    converts: bool = True  # SQL history (False: code, adopted by a baseline)
    lock: str = ""  # what holds the tool's lock in test_lock (advisory key or "row")

    def build(self, url: str, work: Path, pending: bool = False) -> Path:
        """Apply M1..M3 to ``url`` with the tool; with ``pending``, add M4 unapplied."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.tool


class PrismaScenario(Scenario):
    """prisma-engines: each directory's migration.sql runs as one script (raw_cmd); its row is
    inserted when it starts (checksum = hex SHA-256 of the script) and finished_at and
    applied_steps_count are set when it finishes (mark_migration_applied_impl /
    record_migration_started_impl / record_successful_step / record_migration_finished)."""

    def build(self, url: str, work: Path, pending: bool = False) -> Path:
        root = work / "prisma" / "migrations"
        steps = [("20240101000000_init", M1), ("20240102000000_note", M2),
                 ("20240103000000_name_index", M3_CONCURRENT)]
        root.mkdir(parents=True)
        (root / "migration_lock.toml").write_text('provider = "postgresql"\n')
        _exec(url, """CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
)""")
        for name, sql in steps:
            (root / name).mkdir()
            (root / name / "migration.sql").write_text(sql)
            mid = str(uuid.uuid4())
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO _prisma_migrations (id, checksum, migration_name, "
                             "started_at) VALUES (%s, %s, %s, clock_timestamp())",
                             (mid, hashlib.sha256(sql.encode()).hexdigest(), name))
            _exec(url, sql)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("UPDATE _prisma_migrations SET applied_steps_count = 1, "
                             "finished_at = clock_timestamp() WHERE id = %s", (mid,))
        if pending:
            (root / "20240104000000_later").mkdir()
            (root / "20240104000000_later" / "migration.sql").write_text(M4)
        return root


class FlywayScenario(Scenario):
    """Flyway: flyway_schema_history created by PostgreSQLDatabase.getRawCreateScript; each
    versioned script runs in a transaction with its row (type SQL, CRC-32 checksum, success),
    or outside one when its .sql.conf says executeInTransaction=false; U scripts are undo."""

    def build(self, url: str, work: Path, pending: bool = False) -> Path:
        root = work / "sql"
        root.mkdir(parents=True)
        steps = [("1", "V1__init.sql", "init", M1, M1_DOWN, True),
                 ("1.1", "V1_1__add_note.sql", "add note", M2, M2_DOWN, True),
                 ("2", "V2__name_index.sql", "name index", M3_CONCURRENT, None, False)]
        _exec(url, """CREATE TABLE "public"."flyway_schema_history" (
    "installed_rank" INT NOT NULL,
    "version" VARCHAR(50),
    "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL,
    "script" VARCHAR(1000) NOT NULL,
    "checksum" INTEGER,
    "installed_by" VARCHAR(100) NOT NULL,
    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
    "execution_time" INTEGER NOT NULL,
    "success" BOOLEAN NOT NULL
);
ALTER TABLE "public"."flyway_schema_history"
    ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank");
CREATE INDEX "flyway_schema_history_s_idx" ON "public"."flyway_schema_history" ("success");""")
        for rank, (version, script, desc, sql, down, in_tx) in enumerate(steps, start=1):
            (root / script).write_text(sql)
            if down:
                (root / ("U" + script[1:])).write_text(down)
            if not in_tx:
                (root / (script + ".conf")).write_text("executeInTransaction=false\n")
            row = ("INSERT INTO flyway_schema_history (installed_rank, version, description, "
                   "type, script, checksum, installed_by, execution_time, success) VALUES "
                   "(%s, %s, %s, 'SQL', %s, %s, current_user, 3, true)")
            params = (rank, version, desc, script, flyway.checksum(sql))
            with psycopg.connect(url, autocommit=not in_tx) as conn:
                conn.execute(sql)  # type: ignore[arg-type]
                conn.execute(row, params)
        if pending:
            (root / "V3__later.sql").write_text(M4)
        return root


class GolangMigrateScenario(Scenario):
    """golang-migrate's postgres driver: ensureVersionTable's DDL; SetVersion(v, dirty=true),
    the file as one Exec, SetVersion(v, false) (TRUNCATE + INSERT in a transaction). The second
    file carries its own BEGIN/COMMIT, as golang-migrate users write them."""

    def build(self, url: str, work: Path, pending: bool = False) -> Path:
        root = work / "migrations"
        root.mkdir(parents=True)
        steps = [(1, "init", M1, M1_DOWN), (2, "add_note", "BEGIN;\n" + M2 + "COMMIT;\n",
                                               M2_DOWN),
                 (3, "name_index", M3_CONCURRENT, M3_DOWN)]
        _exec(url, 'CREATE TABLE IF NOT EXISTS "public"."schema_migrations" '
                   "(version bigint not null primary key, dirty boolean not null)")

        def set_version(version: int, dirty: bool) -> None:
            with psycopg.connect(url) as conn, conn.transaction():
                conn.execute('TRUNCATE "public"."schema_migrations"')
                conn.execute('INSERT INTO "public"."schema_migrations" (version, dirty) '
                             "VALUES (%s, %s)", (version, dirty))

        for version, name, up, down in steps:
            (root / f"{version}_{name}.up.sql").write_text(up)
            (root / f"{version}_{name}.down.sql").write_text(down)
            set_version(version, True)
            _exec(url, up)
            set_version(version, False)
        if pending:
            (root / "4_later.up.sql").write_text(M4)
            (root / "4_later.down.sql").write_text(M4_DOWN)
        return root


class DieselScenario(Scenario):
    """Diesel: setup_migration_table.sql's DDL; each up.sql via batch_execute inside a
    transaction with its version row, unless metadata.toml says run_in_transaction = false."""

    def build(self, url: str, work: Path, pending: bool = False) -> Path:
        root = work / "migrations"
        root.mkdir(parents=True)
        steps = [("2024-01-01-000000_init", M1, M1_DOWN, True),
                 ("2024-01-02-000000_add_note", M2, M2_DOWN, True),
                 ("2024-01-03-000000_name_index", M3_CONCURRENT, M3_DOWN, False)]
        _exec(url, "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (\n"
                   "       version VARCHAR(50) PRIMARY KEY NOT NULL,\n"
                   "       run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP\n);")
        for name, up, down, in_tx in steps:
            (root / name).mkdir()
            (root / name / "up.sql").write_text(up)
            (root / name / "down.sql").write_text(down)
            if not in_tx:
                (root / name / "metadata.toml").write_text("run_in_transaction = false\n")
            with psycopg.connect(url, autocommit=not in_tx) as conn:
                conn.execute(up)  # type: ignore[arg-type]
                conn.execute("INSERT INTO __diesel_schema_migrations (version) VALUES (%s)",
                             (name.split("_", 1)[0].replace("-", ""),))
        if pending:
            (root / "2024-01-04-000000_later").mkdir()
            (root / "2024-01-04-000000_later" / "up.sql").write_text(M4)
        return root


class DbmateScenario(Scenario):
    """dbmate 2.36 from npm, for real."""

    def build(self, url: str, work: Path, pending: bool = False) -> Path:
        root = work / "db" / "migrations"
        root.mkdir(parents=True)
        files = [("20240101000000_init.sql", M1, M1_DOWN, ""),
                 ("20240102000000_add_note.sql", M2, M2_DOWN, ""),
                 ("20240103000000_name_index.sql", M3_CONCURRENT, M3_DOWN, " transaction:false")]
        for name, up, down, opts in files:
            (root / name).write_text(f"-- migrate:up{opts}\n{up}\n-- migrate:down{opts}\n{down}")
        sep = "&" if "?" in url else "?"
        run_node_tool([str(node_tool("dbmate")), "--url", f"{url}{sep}sslmode=disable",
                       "--migrations-dir", str(root), "--no-dump-schema", "up"],
                      cwd=work, url=url)
        if pending:
            (root / "20240104000000_later.sql").write_text(
                f"-- migrate:up\n{M4}\n-- migrate:down\n{M4_DOWN}")
        return root


class NodePgMigrateScenario(Scenario):
    """node-pg-migrate 9 from npm, for real (SQL migrations run in a transaction, so the index
    is a plain one)."""

    def build(self, url: str, work: Path, pending: bool = False) -> Path:
        root = work / "migrations"
        root.mkdir(parents=True)
        files = [("1700000000001_init.sql", M1, M1_DOWN),
                 ("1700000000002_add-note.sql", M2, M2_DOWN),
                 ("1700000000003_name-index.sql", M3_PLAIN, M3_DOWN)]
        for name, up, down in files:
            (root / name).write_text(f"-- Up Migration\n{up}\n-- Down Migration\n{down}")
        run_node_tool([str(node_tool("node-pg-migrate")), "up", "-m", str(root)],
                      cwd=work, url=url)
        if pending:
            (root / "1700000000004_later.sql").write_text(
                f"-- Up Migration\n{M4}\n-- Down Migration\n{M4_DOWN}")
        return root


class KnexScenario(Scenario):
    """knex 3 + pg 8 from npm, for real; the index migration opts out of the transaction."""

    def build(self, url: str, work: Path, pending: bool = False) -> Path:
        root = work / "migrations"
        root.mkdir(parents=True)
        (work / "knexfile.js").write_text(
            "module.exports = { client: 'pg', connection: process.env.DATABASE_URL, "
            "migrations: { directory: './migrations' } };\n")
        files = [("20240101000000_init.js", M1, M1_DOWN, ""),
                 ("20240102000000_add_note.js", M2, M2_DOWN, ""),
                 ("20240103000000_name_index.js", M3_CONCURRENT, M3_DOWN,
                  "exports.config = { transaction: false };\n")]
        for name, up, down, extra in files:
            (root / name).write_text(
                f"exports.up = (knex) => knex.raw({up!r});\n"
                f"exports.down = (knex) => knex.raw({down!r});\n{extra}")
        run_node_tool([str(node_tool("knex")), "migrate:latest", "--knexfile", "knexfile.js"],
                      cwd=work, url=url)
        return root


class TypeORMScenario(Scenario):
    """TypeORM 1.1 from npm, for real (a CommonJS DataSource and migration classes)."""

    def build(self, url: str, work: Path, pending: bool = False) -> Path:
        root = work / "migrations"
        root.mkdir(parents=True)
        (work / "datasource.js").write_text(
            "const { DataSource } = require('typeorm');\n"
            "module.exports = { default: new DataSource({ type: 'postgres', url: "
            "process.env.DATABASE_URL, migrations: [__dirname + '/migrations/*.js'] }) };\n")
        files = [("1700000000001", "Init", M1, M1_DOWN), ("1700000000002", "AddNote", M2, M2_DOWN),
                 ("1700000000003", "NameIndex", M3_PLAIN, M3_DOWN)]
        for stamp, name, up, down in files:
            cls = f"{name}{stamp}"
            (root / f"{stamp}-{name}.js").write_text(
                f"class {cls} {{\n"
                f"  async up(q) {{ await q.query({up!r}); }}\n"
                f"  async down(q) {{ await q.query({down!r}); }}\n"
                f"}}\nmodule.exports = {{ {cls} }};\n")
        run_node_tool([str(node_tool("typeorm")), "migration:run", "-d", "datasource.js"],
                      cwd=work, url=url)
        return root


SCENARIOS = [PrismaScenario("prisma", lock="72707369"),
             FlywayScenario("flyway", lock="flyway"),
             GolangMigrateScenario("golang-migrate", lock="golang-migrate"),
             DieselScenario("diesel"),
             DbmateScenario("dbmate"),
             NodePgMigrateScenario("node-pg-migrate", lock="7241865325823964"),
             KnexScenario("knex", converts=False, lock="row"),
             TypeORMScenario("typeorm", converts=False)]
