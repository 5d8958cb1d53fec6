"""Reads a canonical description of the managed schemas from the PostgreSQL catalog.

One query per object class, never one per object, so a 1,000-table schema reads in a fraction
of a second (bench/drift.py). The description is a plain dict, ``{schema: {key: attributes}}``,
where a key names one object the way the drift report speaks about it (``column
public.users.nickname``) and the attributes are what a migration decides about it.

What is left out, on purpose, because it changes without anyone changing the schema (a
description that moved on its own would be a false alarm that teaches people to ignore the
report): sequence current values, statistics and ``reltuples``, OIDs, column order (a dump
and restore renumbers columns), storage parameters
(autovacuum tuning), tablespaces, ownership and grants, comments, partitions (children of a
partitioned table come and go with tools such as pg_partman; the parent and its partition key
are kept), objects that belong to an extension (the extension and its version stand for them),
the NOT NULL constraints PostgreSQL 18 keeps in ``pg_constraint`` (nullability is a column
attribute here), indexes that exist only to back a constraint (the constraint stands for them,
whatever name the server gave them), and the job's own tables.

Every ``pg_get_*def`` runs with ``search_path = pg_catalog`` so names come out fully qualified
whatever the session's search_path: the same schema always reads the same.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

# Bump when what is read or how it is normalised changes: a stored description of another
# format is re-recorded with a warning instead of being compared (a changed normalisation
# must never look like drift).
FORMAT = 1

Description = dict[str, dict[str, dict[str, Any]]]

# Relations of the job itself (and of the yoyo CLI) are not the application's schema.
_NOT_OURS = """
    left(c.relname, 6) <> '_yoyo_' AND left(c.relname, 13) <> '_migrate_job_'
    AND c.relname <> 'yoyo_lock'
"""
_NOT_IN_EXTENSION = """
    NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                AND d.objid = c.oid AND d.deptype = 'e')
"""
# Relations whose contents (columns, constraints, indexes, triggers, policies) are described.
# Constraints with a parent (conparentid) are clones the server makes per partition, also on a
# table whose foreign key references a partitioned table: they come with new partitions.
_RELS = f"""
    SELECT c.oid, n.nspname, c.relname, c.relkind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'f', 'c', 'm', 'v')
      AND NOT c.relispartition AND {_NOT_OURS} AND {_NOT_IN_EXTENSION}
"""

_RELATIONS_SQL = f"""
WITH rels AS ({_RELS})
SELECT r.nspname, r.relname, r.relkind, c.relpersistence, c.relrowsecurity,
       c.relforcerowsecurity,
       CASE WHEN r.relkind IN ('v', 'm') THEN pg_get_viewdef(r.oid) END,
       CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
       (SELECT array_agg(pn.nspname || '.' || p.relname ORDER BY i.inhseqno)
          FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
          JOIN pg_namespace pn ON pn.oid = p.relnamespace
         WHERE i.inhrelid = r.oid),
       (SELECT array_agg(x ORDER BY x) FROM unnest(c.reloptions) x
         WHERE r.relkind IN ('v', 'm') AND x LIKE 'check_option=%%'
            OR r.relkind = 'v' AND x LIKE 'security_%%')
FROM rels r JOIN pg_class c ON c.oid = r.oid
"""

_COLUMNS_SQL = f"""
WITH rels AS ({_RELS} AND c.relkind IN ('r', 'p', 'f', 'c'))
SELECT r.nspname, r.relname, r.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       a.attidentity, a.attgenerated,
       CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       CASE WHEN a.attcollation <> t.typcollation THEN co.collname END
FROM rels r
JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
"""

_CONSTRAINTS_SQL = f"""
WITH rels AS ({_RELS} AND c.relkind IN ('r', 'p', 'f'))
SELECT r.nspname, r.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
FROM rels r JOIN pg_constraint k ON k.conrelid = r.oid
WHERE k.contype <> 'n' AND k.conparentid = 0
"""

_INDEXES_SQL = f"""
WITH rels AS ({_RELS} AND c.relkind IN ('r', 'p', 'm'))
SELECT r.nspname, ic.relname, r.relname, pg_get_indexdef(i.indexrelid), i.indisvalid
FROM rels r JOIN pg_index i ON i.indrelid = r.oid
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                  AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
"""

_TRIGGERS_SQL = f"""
WITH rels AS ({_RELS})
SELECT r.nspname, r.relname, g.tgname, pg_get_triggerdef(g.oid), g.tgenabled
FROM rels r JOIN pg_trigger g ON g.tgrelid = r.oid
WHERE NOT g.tgisinternal
"""

_POLICIES_SQL = f"""
WITH rels AS ({_RELS} AND c.relkind IN ('r', 'p'))
SELECT r.nspname, r.relname, p.polname, p.polcmd, p.polpermissive,
       (SELECT array_agg(CASE WHEN x = 0 THEN 'public' ELSE pg_get_userbyid(x)::text END
                         ORDER BY 1) FROM unnest(p.polroles) x),
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
"""

# Sequences the user created (CREATE SEQUENCE, serial). Identity sequences belong to their
# column (deptype 'i') and their generated names are not the user's.
_SEQUENCES_SQL = f"""
SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
       s.seqmin, s.seqmax, s.seqcache, s.seqcycle, c.relpersistence,
       (SELECT tn.nspname || '.' || t.relname || '.' || a.attname
          FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
          JOIN pg_namespace tn ON tn.oid = t.relnamespace
          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'a'
           AND d.refclassid = 'pg_class'::regclass LIMIT 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'S' AND {_NOT_OURS} AND {_NOT_IN_EXTENSION}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'i')
"""

# SQL-standard bodies (BEGIN ATOMIC, PostgreSQL 14+) are stored parsed: deparse them.
_SQL_BODY = """CASE WHEN p.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(p.oid)
            ELSE p.prosrc END"""

_ROUTINES_SQL = """
SELECT n.nspname, p.proname, oidvectortypes(p.proargtypes), p.prokind,
       pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), l.lanname,
       p.provolatile, p.proisstrict, p.prosecdef, p.proleakproof, p.proparallel,
       p.procost, p.prorows, p.proconfig, p.proretset,
       {body},
       p.probin,
       CASE WHEN p.prokind = 'a' THEN (
           SELECT concat_ws(' ', g.aggtransfn::text, format_type(g.aggtranstype, NULL),
                            g.aggfinalfn::text, g.aggcombinefn::text, g.agginitval)
           FROM pg_aggregate g WHERE g.aggfnoid = p.oid) END
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname = ANY(%(schemas)s)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
"""

# Enums, domains and range types (composite types are relations, read with the columns).
_TYPES_SQL = """
SELECT n.nspname, t.typname, t.typtype,
       CASE WHEN t.typtype = 'e' THEN (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder)
                                         FROM pg_enum e WHERE e.enumtypid = t.oid) END,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
       t.typnotnull, t.typdefault,
       CASE WHEN t.typtype = 'd' THEN (
           SELECT array_agg(k.conname || ' ' || pg_get_constraintdef(k.oid) ORDER BY k.conname)
           FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype <> 'n') END,
       CASE WHEN t.typtype = 'r' THEN (
           SELECT concat_ws(' ', format_type(r.rngsubtype, NULL), co.collname,
                            oc.opcname, r.rngcanonical::text, r.rngsubdiff::text)
           FROM pg_range r LEFT JOIN pg_collation co ON co.oid = r.rngcollation
           LEFT JOIN pg_opclass oc ON oc.oid = r.rngsubopc
           WHERE r.rngtypid = t.oid) END,
       CASE WHEN t.typcollation <> 0 AND t.typtype = 'd' THEN (
           SELECT co.collname FROM pg_collation co WHERE co.oid = t.typcollation) END
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = ANY(%(schemas)s) AND t.typtype IN ('e', 'd', 'r')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                  AND d.objid = t.oid AND d.deptype = 'e')
"""

_EXTENSIONS_SQL = """
SELECT n.nspname, e.extname, e.extversion
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE n.nspname = ANY(%(schemas)s)
"""

_SCHEMAS_SQL = "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%(schemas)s)"

_RELKIND = {"r": "table", "p": "table", "f": "foreign table", "v": "view",
            "m": "materialized view", "c": "composite type"}
_PROKIND = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window function"}
_TYPTYPE = {"e": "enum", "d": "domain", "r": "range type"}
_CONTYPE = {"p": "primary key", "u": "unique", "f": "foreign key", "c": "check",
            "x": "exclusion", "t": "trigger"}
_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}
_PARALLEL = {"s": "safe", "r": "restricted", "u": "unsafe"}
_POLCMD = {"*": "all", "r": "select", "a": "insert", "w": "update", "d": "delete"}
_ENABLED = {"O": "enabled", "D": "disabled", "R": "replica", "A": "always"}


def body_hash(body: str | None) -> str | None:
    """Hash of a routine body with whitespace runs collapsed: re-indenting a function, or a
    client that sends CRLF line ends, is not a change of what the function does."""
    if body is None:
        return None
    return hashlib.sha256(" ".join(body.split()).encode("utf-8")).hexdigest()


def _squash(text: str | None) -> str | None:
    """Deparsed definitions (views) compared with whitespace runs collapsed."""
    return None if text is None else " ".join(text.split())


# What a second session reads when ``read`` is given one: the two halves cost the server about
# the same (500 tables: deparsing the indexes alone is ~40% of it), so the wall time of a large
# read is nearly halved (measured on 500 tables, fresh sessions: 43 ms on one, 27 ms on two).
_HELPER_SHARE = ("indexes", "sequences", "routines", "types")

# The catalog digest: per query, the md5 the server computes over the text of every row it
# returns, sorted bytewise. A row's text (record_out) quotes every field that needs it, so the
# sorted, newline-joined texts spell exactly one multiset of rows: equal digests mean the
# queries returned the same rows, hence (the description being a function of those rows, with
# keys unique by the catalog's own unique indexes) the same description and fingerprint.
# ``digest`` asks the server for these only (no rows sent, nothing built or hashed here);
# ``read_with_digest`` gets each query's rows and its digest from one statement, computed from
# one materialised evaluation, so a recorded digest always belongs to the recorded rows.
_DIGEST_OF = ("SELECT coalesce(md5(string_agg(q::text, E'\\n' ORDER BY q::text COLLATE \"C\")), "
              "'') FROM {source} q")
_DIGEST_FORMAT = 1  # bump with any change to how the digest is computed


def read(conn: psycopg.Connection[Any], schemas: list[str],
         helper: psycopg.Connection[Any] | None = None) -> Description:
    """The description of ``schemas``. Runs inside a transaction on ``conn``: its own when the
    connection is in autocommit, else the caller's (e.g. a migration's, just before commit).

    ``helper``: an idle second session of the same database (one that may read the catalog
    now: the caller holds the migration lock). Part of the queries run on it, in parallel, in
    a transaction of its own that it ends. If it fails, ``conn`` reads that part too: the
    description never depends on whether a helper was given."""
    rows, _ = _collect(conn, schemas, helper, "rows")
    return _describe(rows)


def read_with_digest(conn: psycopg.Connection[Any], schemas: list[str],
                     helper: psycopg.Connection[Any] | None = None
                     ) -> tuple[Description, str]:
    """``read``, and the catalog digest of exactly the rows the description was built from."""
    rows, parts = _collect(conn, schemas, helper, "rows+digest")
    return _describe(rows), combine(schemas, parts)


def digest(conn: psycopg.Connection[Any], schemas: list[str],
           helper: psycopg.Connection[Any] | None = None) -> str:
    """The catalog digest of ``schemas`` as they are now, computed by the server: equal to a
    recorded one only if every catalog query returns the rows it returned then."""
    _, parts = _collect(conn, schemas, helper, "digest")
    return combine(schemas, parts)


def combine(schemas: list[str], parts: dict[str, str]) -> str:
    """One digest from the per-query ones, with what else decides the rows: the parameters
    (the schemas) and the queries' format."""
    import hashlib
    import json

    text = json.dumps({"format": FORMAT, "digest": _DIGEST_FORMAT, "schemas": sorted(schemas),
                       "queries": parts}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _queries(server_version: int) -> dict[str, str]:
    body_sql = _SQL_BODY if server_version >= 140000 else "p.prosrc"
    return {"schemas": _SCHEMAS_SQL, "relations": _RELATIONS_SQL, "columns": _COLUMNS_SQL,
            "constraints": _CONSTRAINTS_SQL, "indexes": _INDEXES_SQL,
            "triggers": _TRIGGERS_SQL, "policies": _POLICIES_SQL,
            "sequences": _SEQUENCES_SQL, "routines": _ROUTINES_SQL.format(body=body_sql),
            "types": _TYPES_SQL, "extensions": _EXTENSIONS_SQL}


def _with_digest(sql: str, server_version: int) -> str:
    """``sql``'s rows, each with a NULL first column, and one more row: the digest of those
    rows (then NULLs). One statement, one evaluation of ``sql`` (a materialised CTE)."""
    materialized = "MATERIALIZED " if server_version >= 120000 else ""  # always before 12
    digest_sql = _DIGEST_OF.format(source="q")
    return (f"WITH q AS {materialized}({sql})\n"
            "SELECT NULL::text, q.* FROM q\n"
            f"UNION ALL SELECT d.digest, q.* FROM ({digest_sql}) d(digest) LEFT JOIN q ON false")


Rows = dict[str, list[tuple[Any, ...]]]


def _part(conn: psycopg.Connection[Any], names: list[str] | tuple[str, ...],
          schemas: list[str], mode: str) -> tuple[Rows, dict[str, str]]:
    """The ``names`` queries on ``conn`` in one round trip (a pipeline), in ``mode``: rows,
    rows+digest, digest. Returns their rows and their digests."""
    sql = _queries(conn.info.server_version)
    params = {"schemas": schemas}
    rows: Rows = {}
    parts: dict[str, str] = {}
    if mode == "digest":
        # One statement per query, pipelined (measured: one statement of all of them plans
        # slower on a new session, 22 ms against 17 for a 30-table schema).
        texts = [_DIGEST_OF.format(source="(" + sql[n] + ")") for n in names]
    elif mode == "rows":
        texts = [sql[n] for n in names]
    else:
        texts = [_with_digest(sql[n], conn.info.server_version) for n in names]
    with conn.pipeline():
        cursors = [conn.cursor().execute(text, params) for text in texts]
    for name, cur in zip(names, cursors, strict=True):
        got = cur.fetchall()
        if mode == "digest":
            parts[name] = got[0][0]
        elif mode == "rows":
            rows[name] = got
            continue
        rows[name] = [r[1:] for r in got if r[0] is None]
        parts[name] = next(r[0] for r in got if r[0] is not None)
    return rows, parts


def _collect(conn: psycopg.Connection[Any], schemas: list[str],
             helper: psycopg.Connection[Any] | None, mode: str
             ) -> tuple[Rows, dict[str, str]]:
    import contextlib

    ahead = _HelperRead(helper, schemas, mode) if helper is not None else None
    tx = conn.transaction() if conn.autocommit else contextlib.nullcontext()
    with tx:
        # Fully qualified deparsing, whatever the session's search_path; reverted at the end
        # of the transaction (the caller's transaction ends right after when it is not ours).
        conn.execute("SELECT set_config('search_path', 'pg_catalog', true)")
        names = [n for n in _queries(0) if ahead is None or n not in _HELPER_SHARE]
        rows, parts = _part(conn, names, schemas, mode)
        helped = ahead.result() if ahead is not None else None
        if ahead is not None and helped is None:
            helped = _part(conn, _HELPER_SHARE, schemas, mode)
    if helped is not None:
        rows.update(helped[0])
        parts.update(helped[1])
    return rows, parts


class _HelperRead:
    """``_HELPER_SHARE`` read on a second session, on a thread (the wait releases the GIL)."""

    def __init__(self, helper: psycopg.Connection[Any], schemas: list[str], mode: str) -> None:
        import threading

        self.got: tuple[Rows, dict[str, str]] | None = None
        self._helper = helper
        self._schemas = schemas
        self._mode = mode
        # Only an idle session: one inside a transaction is someone else's.
        usable = not helper.closed and helper.info.transaction_status == 0
        self._thread = threading.Thread(target=self._run, name="catalog-read", daemon=True)
        if usable:
            self._thread.start()

    def _run(self) -> None:
        import contextlib

        conn = self._helper
        try:
            with conn.transaction() if conn.autocommit else contextlib.nullcontext():
                conn.execute("SELECT set_config('search_path', 'pg_catalog', true)")
                self.got = _part(conn, _HELPER_SHARE, self._schemas, self._mode)
        except Exception:  # noqa: S110 - the main session reads this part itself
            self.got = None
        finally:
            if not conn.autocommit:
                with contextlib.suppress(Exception):
                    conn.rollback()  # end the read's transaction (and its search_path)

    def result(self) -> tuple[Rows, dict[str, str]] | None:
        if self._thread.ident is None:
            return None
        self._thread.join()
        return self.got


def _describe(answers: Rows) -> Description:
    out: Description = {}

    def put(schema: str, key: str, attrs: dict[str, Any]) -> None:
        out.setdefault(schema, {})[key] = {k: v for k, v in attrs.items() if v is not None}

    def rows(name: str) -> list[tuple[Any, ...]]:
        return answers[name]

    for (schema,) in rows("schemas"):
        put(schema, f"schema {schema}", {})
    for (schema, name, kind, persistence, rls, force_rls, viewdef, partkey, parents,
         options) in rows("relations"):
        put(schema, f"{_RELKIND[kind]} {schema}.{name}", {
            "partitioned by": partkey,
            "unlogged": True if persistence == "u" else None,
            "row level security": ("forced" if force_rls else "enabled") if rls else None,
            "inherits": ", ".join(parents) if parents else None,
            "definition": _squash(viewdef),
            "options": ", ".join(options) if options else None,
        })
    for (schema, table, relkind, col, typ, notnull, default, identity, generated,
         expression, collation) in rows("columns"):
        kind = "attribute" if relkind == "c" else "column"
        put(schema, f"{kind} {schema}.{table}.{col}", {
            "of": f"{_RELKIND[relkind]} {schema}.{table}",
            "type": typ,
            "not null": True if notnull else None,
            "default": default,
            "identity": {"a": "always", "d": "by default"}.get(identity),
            "generated": (f"{'stored' if generated == 's' else 'virtual'} {expression}"
                          if generated else None),
            "collation": collation,
        })
    for schema, table, name, contype, definition in rows("constraints"):
        put(schema, f"constraint {schema}.{table}.{name}", {
            "of": f"table {schema}.{table}", "kind": _CONTYPE.get(contype, contype),
            "definition": definition,
        })
    for schema, name, table, definition, valid in rows("indexes"):
        put(schema, f"index {schema}.{name}", {
            "of": f"table {schema}.{table}", "definition": definition,
            "valid": None if valid else False,
        })
    for schema, table, name, definition, enabled in rows("triggers"):
        put(schema, f"trigger {schema}.{table}.{name}", {
            "of": f"table {schema}.{table}", "definition": definition,
            "enabled": None if enabled == "O" else _ENABLED.get(enabled, enabled),
        })
    for (schema, table, name, cmd, permissive, roles, using, check) in rows("policies"):
        put(schema, f"policy {schema}.{table}.{name}", {
            "of": f"table {schema}.{table}", "command": _POLCMD.get(cmd, cmd),
            "permissive": bool(permissive), "roles": ", ".join(roles or []),
            "using": using, "with check": check,
        })
    for (schema, name, typ, start, increment, minimum, maximum, cache, cycle, persistence,
         owned_by) in rows("sequences"):
        put(schema, f"sequence {schema}.{name}", {
            "type": typ, "start": start, "increment": increment, "min": minimum,
            "max": maximum, "cache": cache, "cycle": True if cycle else None,
            "unlogged": True if persistence == "u" else None, "owned by": owned_by,
        })
    for (schema, name, identity, kind, arguments, result, language, volatility, strict,
         secdef, leakproof, parallel, cost, rows_, config, retset, body, binary,
         aggregate) in rows("routines"):
        put(schema, f"{_PROKIND.get(kind, kind)} {schema}.{name}({identity})", {
            "arguments": arguments,
            "returns": result,
            "language": language,
            "volatility": _VOLATILITY.get(volatility, volatility),
            "strict": True if strict else None,
            "security definer": True if secdef else None,
            "leakproof": True if leakproof else None,
            "parallel": _PARALLEL.get(parallel, parallel),
            "cost": float(cost) if cost is not None else None,
            "rows": float(rows_) if retset and rows_ else None,
            "settings": ", ".join(sorted(config)) if config else None,
            "body": body_hash(body),
            "library": binary,
            "aggregate": aggregate,
        })
    for (schema, name, typtype, labels, base, notnull, default, checks, range_,
         collation) in rows("types"):
        put(schema, f"{_TYPTYPE[typtype]} {schema}.{name}", {
            "values": ", ".join(labels) if labels is not None else None,
            "base type": base,
            "not null": True if notnull else None,
            "default": default,
            "constraints": "; ".join(checks) if checks else None,
            "range": range_,
            "collation": collation,
        })
    for schema, name, version in rows("extensions"):
        put(schema, f"extension {name}", {"version": version})
    return out
