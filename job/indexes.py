"""Indexes that migrations build, and INVALID ones: an INVALID index is never success.

A ``CREATE INDEX CONCURRENTLY`` that fails, is cancelled (SIGTERM, ``lock_timeout``) or loses
its server (SIGKILL of the client, restart) leaves an INVALID index (``pg_index.indisvalid``):
the planner never uses it, every write still maintains it, and a rerun's ``IF NOT EXISTS`` skips
it (NOTES §12). So, for every non-transactional migration:

- before it runs, an INVALID index it builds (same name, same table) is the leftover of an
  interrupted build of this very statement: it is dropped (``DROP INDEX CONCURRENTLY``) so the
  migration rebuilds it; a build still in progress by another session (the killed client's
  backend lingers until ``client_connection_check_interval`` notices) is waited for first;
- after it ran, every index it builds must be valid, or it is not recorded (exit 8); INVALID
  orphans of its own unnamed builds or of ``REINDEX CONCURRENTLY`` (``*_ccnew``) are dropped.

Which indexes a migration builds comes from the real grammar (libpg_query, as the safety gate
parses), including ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` and unnamed indexes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from job.migrations import Migration, Step


@dataclass(frozen=True)
class Build:
    """An index one statement builds (``kind="create"``) or rebuilds (``"reindex"``)."""

    kind: str
    name: str | None  # the index; None for an unnamed CREATE INDEX (the server picks it)
    schema: str | None  # schema of the table (an index always lives in its table's schema)
    table: str | None  # None for REINDEX INDEX (the table is looked up)
    concurrent: bool
    statement: str
    line: int | None

    def table_regclass(self) -> str | None:
        return _qualified(self.schema, self.table) if self.table else None

    def index_regclass(self) -> str | None:
        return _qualified(self.schema, self.name) if self.name else None

    def describe(self) -> str:
        return self.name or f"(unnamed index on {self.table})"


@dataclass(frozen=True)
class InvalidIndex:
    oid: int
    index: str  # schema-qualified
    table: str  # schema-qualified
    definition: str
    building_pid: int | None  # a session building it right now (pg_stat_progress_create_index)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "table": self.table, "definition": self.definition,
                "being_built_by_pid": self.building_pid}


# Run without parameters: a literal "%" here, not "%%".
INVALID_SQL = """
SELECT i.indexrelid, format('%I.%I', n.nspname, c.relname),
       format('%I.%I', tn.nspname, t.relname), pg_get_indexdef(i.indexrelid),
       (SELECT p.pid FROM pg_stat_progress_create_index p
        WHERE p.index_relid = i.indexrelid LIMIT 1)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE NOT i.indisvalid
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""


# -- what a migration builds --------------------------------------------------------------------
def builds_in(sql: str, line: int | None = None) -> list[Build]:
    """Index builds in one piece of SQL (one or more statements). Unparsable SQL builds nothing
    we can name; the server will say what is wrong with it."""
    from job.safety.parser import ParseError, parse_sql

    try:
        tree = parse_sql(sql)
    except ParseError:
        return []
    out: list[Build] = []
    short = " ".join(sql.split())[:160]
    for raw in tree.get("stmts", []):
        stmt = raw.get("stmt") or {}
        if "IndexStmt" in stmt:
            node = stmt["IndexStmt"]
            rel = node.get("relation") or {}
            out.append(Build("create", node.get("idxname"), rel.get("schemaname"),
                             rel.get("relname"), bool(node.get("concurrent")), short, line))
        elif "ReindexStmt" in stmt:
            node = stmt["ReindexStmt"]
            if not _concurrently(node.get("params") or []):
                continue  # a plain REINDEX is transactional: it cannot leave an INVALID index
            rel = node.get("relation") or {}
            kind = node.get("kind", "")
            if kind == "REINDEX_OBJECT_INDEX":
                out.append(Build("reindex", rel.get("relname"), rel.get("schemaname"), None,
                                 True, short, line))
            elif kind == "REINDEX_OBJECT_TABLE":
                out.append(Build("reindex", None, rel.get("schemaname"), rel.get("relname"),
                                 True, short, line))
    return out


def _concurrently(params: list[Any]) -> bool:
    for p in params:
        d = p.get("DefElem") or {}
        if d.get("defname") == "concurrently":
            arg = ((d.get("arg") or {}).get("String") or {}).get("sval")
            return arg is None or arg.lower() not in {"false", "off", "0"}
    return False


def step_builds(step: Step) -> list[Build]:
    return builds_in(step.apply, step.line) if isinstance(step.apply, str) else []


def migration_builds(m: Migration) -> list[Build]:
    return [b for step in m.exec_steps() for b in step_builds(step)]


# -- what the database has ------------------------------------------------------------------------
def invalid_indexes(conn: psycopg.Connection[Any]) -> list[InvalidIndex]:
    rows = conn.execute(INVALID_SQL).fetchall()
    return [InvalidIndex(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


def find(conn: psycopg.Connection[Any], build: Build) -> tuple[int, str, bool] | None:
    """(oid, qualified name, valid) of the named index a build makes, on the build's table."""
    regclass = build.index_regclass()
    if regclass is None:
        return None
    row = conn.execute(
        "SELECT i.indexrelid, format('%%I.%%I', n.nspname, c.relname), i.indisvalid, i.indrelid "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE i.indexrelid = to_regclass(%s)", (regclass,)).fetchone()
    if row is None:
        return None
    table = build.table_regclass()
    if table is not None:
        same = conn.execute("SELECT %s::oid = to_regclass(%s)", (row[3], table)).fetchone()
        if not same or not same[0]:
            return None  # an index of that name on another table: not this build's
    return int(row[0]), str(row[1]), bool(row[2])


def index_oids(conn: psycopg.Connection[Any], builds: Iterable[Build]) -> dict[str, set[int]]:
    """Index OIDs per table the builds touch (to tell which index an unnamed build made)."""
    out: dict[str, set[int]] = {}
    for b in builds:
        table = b.table_regclass()
        if table is None or table in out:
            continue
        rows = conn.execute("SELECT indexrelid FROM pg_index WHERE indrelid = to_regclass(%s)",
                            (table,)).fetchall()
        out[table] = {int(r[0]) for r in rows}
    return out


def wait_for_build(conn: psycopg.Connection[Any], oid: int, deadline: float, log: Any,
                   sleep: Callable[[float], None] = time.sleep) -> int | None:
    """Wait while another session builds this index; returns that pid if it is still at it."""
    reported = False
    while True:
        row = conn.execute("SELECT pid FROM pg_stat_progress_create_index WHERE index_relid = %s "
                           "AND pid <> pg_backend_pid() LIMIT 1", (oid,)).fetchone()
        if row is None:
            return None
        if time.monotonic() >= deadline:
            return int(row[0])
        if not reported:
            log.info("index.waiting_for_build", index_oid=oid, pid=row[0],
                     reason="another session is still building this index (e.g. the backend of "
                            "a killed run, ended by client_connection_check_interval)")
            reported = True
        sleep(0.2)


def drop(conn: psycopg.Connection[Any], qualified: str) -> None:
    """``DROP INDEX CONCURRENTLY`` (autocommit connection): no write lock on the table."""
    conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {qualified}")


def orphans_after(conn: psycopg.Connection[Any], builds: Iterable[Build],
                  before: dict[str, set[int]]) -> tuple[list[tuple[InvalidIndex, str]],
                                                        list[InvalidIndex]]:
    """After a migration ran: INVALID indexes on its tables, split into orphans of its own
    builds (to drop, with the reason) and the rest (to report)."""
    builds = list(builds)
    tables: set[str] = set()
    for b in builds:
        regclass = b.table_regclass()
        if regclass is not None:
            tables.add(regclass)
    reindexed = [b for b in builds if b.kind == "reindex"]
    if reindexed:
        for b in reindexed:
            if b.table is None and b.name:
                row = conn.execute("SELECT format('%%I.%%I', n.nspname, t.relname) FROM pg_index i "
                                   "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON "
                                   "n.oid = t.relnamespace WHERE i.indexrelid = to_regclass(%s)",
                                   (b.index_regclass(),)).fetchone()
                if row:
                    tables.add(row[0])
    if not tables:
        return [], []
    table_oids = {t: _oid(conn, t) for t in tables}
    wanted = {oid for oid in table_oids.values() if oid is not None}
    invalid = [ix for ix in invalid_indexes(conn) if _oid(conn, ix.table) in wanted]
    if not invalid:
        return [], []
    orphans: list[tuple[InvalidIndex, str]] = []
    rest: list[InvalidIndex] = []
    for ix in invalid:
        reason = _orphan_reason(conn, ix, builds, before)
        if reason and ix.building_pid is None:
            orphans.append((ix, reason))
        else:
            rest.append(ix)
    return orphans, rest


def _orphan_reason(conn: psycopg.Connection[Any], ix: InvalidIndex, builds: list[Build],
                   before: dict[str, set[int]]) -> str | None:
    name = ix.index.rsplit(".", 1)[-1].strip('"')
    for b in builds:
        if b.kind == "reindex":
            base = b.name
            if base and re.fullmatch(re.escape(base) + r"_cc(new|old)\d*", name):
                return f"left by an interrupted REINDEX CONCURRENTLY of {base}"
            if base is None and re.search(r"_cc(new|old)\d*$", name):
                return f"left by an interrupted REINDEX TABLE CONCURRENTLY of {b.table}"
            continue
        if b.name is not None:
            continue
        table = b.table_regclass()
        if table is None:
            continue
        new = [o for o in _index_oids_of(conn, table) if o not in before.get(table, set())]
        for oid in new:
            row = conn.execute("SELECT pg_get_indexdef(%s), indisvalid, "
                               "format('%%I.%%I', n.nspname, c.relname) FROM pg_index i "
                               "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON "
                               "n.oid = c.relnamespace WHERE indexrelid = %s",
                               (oid, oid)).fetchone()
            if row and row[1] and _same_definition(row[0], ix.definition):
                return (f"duplicate of {row[2]}, which this migration's unnamed build made: "
                        "left by an interrupted earlier build of the same statement")
    return None


def _same_definition(a: str, b: str) -> bool:
    """pg_get_indexdef output of two indexes, ignoring their names."""
    strip = re.compile(r"^(CREATE (?:UNIQUE )?INDEX )(\S+|\"(?:[^\"]|\"\")+\")( ON )")
    return strip.sub(r"\1?\3", a) == strip.sub(r"\1?\3", b)


def _index_oids_of(conn: psycopg.Connection[Any], table: str) -> list[int]:
    rows = conn.execute("SELECT indexrelid FROM pg_index WHERE indrelid = to_regclass(%s)",
                        (table,)).fetchall()
    return [int(r[0]) for r in rows]


def _oid(conn: psycopg.Connection[Any], regclass: str) -> int | None:
    row = conn.execute("SELECT to_regclass(%s)::oid", (regclass,)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _qualified(schema: str | None, name: str | None) -> str:
    assert name is not None
    quoted = '"' + name.replace('"', '""') + '"'
    return f'"{schema.replace(chr(34), chr(34) * 2)}".{quoted}' if schema else quoted


# -- attribution (status, run) --------------------------------------------------------------------
def attribute(conn: psycopg.Connection[Any], found: Iterable[InvalidIndex],
              migrations: Iterable[Migration], applied: set[str]) -> list[dict[str, Any]]:
    """Each INVALID index with the migration that builds it (if any), and what happens next."""
    found = list(found)
    if not found:
        return []
    by_oid: dict[int, Migration] = {}
    for m in migrations:
        try:
            if m.transactional:
                continue  # a transactional build is atomic: it cannot leave an INVALID index
            builds = migration_builds(m)
        except Exception:  # an unreadable migration is reported by the commands themselves
            continue
        for b in builds:
            hit = find(conn, b) if b.kind == "create" else None
            if hit is not None:
                by_oid.setdefault(hit[0], m)
    out = []
    for ix in found:
        item = ix.as_dict()
        owner = by_oid.get(ix.oid)
        if owner is not None:
            item["migration"] = owner.id
            item["file"] = owner.path
            if owner.id in applied:
                item["state"] = "recorded"
                item["fix"] = (f"REINDEX INDEX CONCURRENTLY {ix.index} (or DROP INDEX "
                               f"CONCURRENTLY {ix.index}, `migrate-job unmark {owner.id} --yes` and "
                               "run again)")
            else:
                item["state"] = "pending"
                item["fix"] = "`migrate-job run` drops and rebuilds it"
        else:
            item["migration"] = None
            item["state"] = "being built" if ix.building_pid else "not built by a known migration"
            item["fix"] = (None if ix.building_pid else
                           f"DROP INDEX CONCURRENTLY {ix.index}, then build it again")
        out.append(item)
    return out
