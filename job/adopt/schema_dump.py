"""The current schema as one migration: ``pg_dump --schema-only``, cleaned to replay anywhere.

What is kept and why:
- ``pg_dump --schema-only -n <managed schemas>`` without owners, privileges, tablespaces,
  security labels, publications or subscriptions: those belong to an environment, not to the
  schema a fresh environment needs;
- the job's tracking tables (``_yoyo_*``, ``_migrate_job_*``, ``yoyo_lock``) and every known
  migration tool's history table (plus the sequences they own) are left out: a fresh database
  gets its own;
- ``pg_dump -n`` does not dump extensions, so they are created first, idempotently
  (``CREATE EXTENSION IF NOT EXISTS ... WITH SCHEMA ...``), in creation order; schemas are
  created with ``IF NOT EXISTS`` and ``public`` (present in every database, owned by
  pg_database_owner since PostgreSQL 15) is not created at all;
- pg_dump's session settings go, except the two that change what the statements do:
  ``check_function_bodies = false`` (pg_dump creates SQL functions before the tables they read)
  and ``default_table_access_method``, both as ``SET LOCAL`` so they end with the migration's
  transaction; ``\\restrict`` lines (psql meta-commands since pg_dump 17.6) and the
  ``set_config('search_path', '', false)`` call go too (pg_dump qualifies every name);
- materialized views that hold data in the source are refreshed at the end, so a fresh database
  can query them.
The statements are split with a psql-compatible lexer (``job.safety.parser.split_statements``),
never line by line, so function bodies are kept byte for byte.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from job.errors import BackupError, ConfigError

if TYPE_CHECKING:
    import psycopg

    from job.db import ConnParams
    from job.settings import Settings

# Migration tools' history tables (and lock tables), left out of every baseline.
TOOL_TABLES = ("_prisma_migrations", "flyway_schema_history", "schema_migrations", "pgmigrations",
               "knex_migrations", "knex_migrations_lock", "__diesel_schema_migrations",
               "yoyo_lock", "_yoyo_migration", "_yoyo_log", "_yoyo_version")
JOB_TABLE_PREFIXES = ("_migrate_job_", "_yoyo_")
_KEEP_SETTINGS = {"check_function_bodies", "default_table_access_method"}
_SET = re.compile(r"\ASET\s+(\w+)\s*=\s*(.*?)\s*;\s*\Z", re.S | re.I)
_SEARCH_PATH = re.compile(r"\ASELECT\s+pg_catalog\.set_config\('search_path'", re.I)
_CREATE_SCHEMA = re.compile(r"\ACREATE\s+SCHEMA\s+(?!IF\s+NOT\s+EXISTS\b)(.*)\Z", re.S | re.I)
_PUBLIC_COMMENT = "COMMENT ON SCHEMA public IS 'standard public schema';"
_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.S)


@dataclass(frozen=True)
class Dump:
    sql: str  # the migration body (no header)
    schemas: tuple[str, ...]
    excluded: tuple[str, ...]  # tracking tables left out, schema-qualified
    extensions: tuple[str, ...]
    statements: int


def managed_schemas(conn: psycopg.Connection[Any], requested: Sequence[str]) -> tuple[str, ...]:
    if not requested:
        row = conn.execute("SELECT current_schema()").fetchone()
        if not row or row[0] is None:
            raise ConfigError("no current schema (check search_path) and no --schema given")
        return (str(row[0]),)
    rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)",
                        (list(requested),)).fetchall()
    missing = sorted(set(requested) - {r[0] for r in rows})
    if missing:
        raise ConfigError(f"--schema {', '.join(missing)}: no such schema in this database")
    return tuple(dict.fromkeys(requested))


def tracking_relations(conn: psycopg.Connection[Any], schemas: Sequence[str],
                       extra: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(schema, name) of every tracking table in the schemas and of the sequences they own."""
    names = list(TOOL_TABLES) + list(extra)
    rows = conn.execute(
        "SELECT c.oid, n.nspname, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p') AND ("
        " c.relname = ANY(%(names)s) OR starts_with(c.relname, '_migrate_job_') OR"
        " starts_with(c.relname, '_yoyo_') OR"
        # TypeORM's table is called just "migrations": only its exact shape counts.
        " (c.relname = 'migrations' AND (SELECT array_agg(attname::text ORDER BY attname) FROM"
        "  pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped)"
        "  = ARRAY['id', 'name', 'timestamp']))",
        {"schemas": list(schemas), "names": names}).fetchall()
    oids = [r[0] for r in rows]
    out = [(r[1], r[2]) for r in rows]
    if oids:
        seqs = conn.execute(
            "SELECT n.nspname, s.relname FROM pg_depend d "
            "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
            "JOIN pg_namespace n ON n.oid = s.relnamespace "
            "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
            "AND d.refobjid = ANY(%s) AND d.deptype IN ('a', 'i')", (oids,)).fetchall()
        out.extend((r[0], r[1]) for r in seqs)
    return sorted(out)


def _pattern(*parts: str) -> str:
    """A pg_dump -n/-T pattern that matches exactly these names (no wildcards)."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def pg_dump_path(settings: Settings, server_version_num: int) -> str:
    from job.backup.tools import find_tool, server_version_text, tool_version

    try:
        path = find_tool("pg_dump", settings.environ)
        version = tool_version(path)
    except BackupError as exc:
        raise ConfigError(exc.message) from None
    major = int(version.split(".")[0])
    if major < server_version_num // 10000:
        raise ConfigError(
            f"pg_dump {version} ({path}) is older than the PostgreSQL "
            f"{server_version_text(server_version_num)} server and cannot dump it; install "
            f"pg_dump {server_version_num // 10000} or newer or point MIGRATE_PG_BIN_DIR at it")
    return path


def take(conn: psycopg.Connection[Any], settings: Settings, params: ConnParams,
         schemas: Sequence[str], extra_tables: Iterable[str] = ()) -> Dump:
    from job.childenv import child_env

    row = conn.execute("SELECT current_setting('server_version_num')::int, current_database()"
                       ).fetchone()
    assert row is not None
    version_num, dbname = int(row[0]), str(row[1])
    pg_dump = pg_dump_path(settings, version_num)
    excluded = tracking_relations(conn, schemas, extra_tables)
    argv = [pg_dump, "--schema-only", "--no-owner", "--no-privileges", "--no-tablespaces",
            "--no-security-labels", "--no-publications", "--no-subscriptions",
            f"--lock-wait-timeout={max(1, int(settings.lock_wait * 1000))}"]
    for schema in schemas:
        argv += ["-n", _pattern(schema)]
    for schema, name in excluded:
        argv += ["-T", _pattern(schema, name)]
    src = params.merged(dbname=params.params.get("dbname") or dbname)
    with child_env(src, base=settings.environ) as env:
        try:
            proc = subprocess.run(argv, capture_output=True, env=env, check=False)
        except OSError as exc:
            raise ConfigError(f"cannot run {pg_dump}: {exc}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise ConfigError(f"pg_dump --schema-only failed (exit {proc.returncode}): {err}")
    extensions = conn.execute(
        "SELECT e.extname, n.nspname FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname <> 'plpgsql' ORDER BY e.oid").fetchall()
    populated = {r[0] for r in conn.execute(
        "SELECT format('%%I.%%I', schemaname, matviewname) FROM pg_matviews "
        "WHERE ispopulated AND schemaname = ANY(%s)", (list(schemas),)).fetchall()}
    prelude = _extensions_sql(conn, extensions)
    body, count = clean(proc.stdout.decode("utf-8"), populated)
    return Dump(prelude + body, tuple(schemas), tuple(f"{s}.{n}" for s, n in excluded),
                tuple(r[0] for r in extensions), count + len(extensions))


def _extensions_sql(conn: psycopg.Connection[Any], extensions: Sequence[tuple[str, str]]) -> str:
    from psycopg import sql

    lines = []
    for schema in dict.fromkeys(s for _, s in extensions):
        if schema not in ("public", "pg_catalog"):
            lines.append(sql.SQL("CREATE SCHEMA IF NOT EXISTS {};").format(
                sql.Identifier(schema)).as_string(conn))
    for name, schema in extensions:
        lines.append(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {};").format(
            sql.Identifier(name), sql.Identifier(schema)).as_string(conn))
    return "\n".join(lines) + "\n\n" if lines else ""


def clean(dump: str, populated_matviews: set[str]) -> tuple[str, int]:
    """pg_dump's script -> migration body. Returns (body, statements)."""
    from job.safety.parser import split_statements

    pieces, _metas, lex_error = split_statements(dump)  # \restrict lines are blanked here
    if lex_error is not None:
        raise ConfigError(f"cannot read pg_dump's output: {lex_error[1]}")
    out: list[str] = []
    refresh: list[str] = []
    for _, piece in pieces:
        stmt = piece[_LEADING.match(piece).end():].strip()  # type: ignore[union-attr]
        if not stmt or stmt == ";":
            continue
        m = _SET.match(stmt)
        if m:
            if m.group(1).lower() in _KEEP_SETTINGS:
                out.append(f"SET LOCAL {m.group(1)} = {m.group(2)};")
            continue
        if _SEARCH_PATH.match(stmt) or stmt == _PUBLIC_COMMENT:
            continue
        m = _CREATE_SCHEMA.match(stmt)
        if m:
            if m.group(1).rstrip("; \n") == "public":
                continue
            stmt = "CREATE SCHEMA IF NOT EXISTS " + m.group(1)
        for view in populated_matviews:
            if re.match(rf"\ACREATE\s+MATERIALIZED\s+VIEW\s+{re.escape(view)}\s", stmt):
                refresh.append(f"REFRESH MATERIALIZED VIEW {view};")
        out.append(stmt)
    out.extend(refresh)
    return "\n\n".join(out) + "\n", len(out)
