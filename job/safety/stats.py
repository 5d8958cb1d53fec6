"""Table sizes from a live server, for the impact line of a finding.

Read-only catalog queries only: `to_regclass` takes no lock, `pg_total_relation_size` takes
ACCESS SHARE briefly (the weakest lock; `plan` promises nothing stronger).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .model import TableStats

# Partitioned tables keep no rows themselves: sum their leaf partitions (pg_partition_tree, 12+).
_QUERY = """
SELECT n.name,
       CASE WHEN c.relkind = 'p' THEN
            (SELECT coalesce(sum(greatest(pc.reltuples, 0)), 0)
               FROM pg_partition_tree(c.oid) t JOIN pg_class pc ON pc.oid = t.relid WHERE t.isleaf)
            ELSE c.reltuples END AS rows,
       CASE WHEN c.relkind = 'p' THEN
            (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)
               FROM pg_partition_tree(c.oid) t WHERE t.isleaf)
            ELSE pg_total_relation_size(c.oid) END AS bytes
  FROM unnest(%(names)s::text[], %(regs)s::text[]) AS n(name, reg)
  JOIN pg_class c ON c.oid = to_regclass(n.reg)
"""


def _regclass_text(name: str) -> str:
    """'schema.table' as the parser folded it -> a quoted name to_regclass reads back exactly."""
    parts = name.split(".", 1)
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


class PgStats:
    """StatsProvider over a psycopg 3 connection (any transaction state; it only reads)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def table_stats(self, names: Sequence[str]) -> Mapping[str, TableStats]:
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        with self.conn.cursor() as cur:
            cur.execute(_QUERY, {"names": names, "regs": [_regclass_text(n) for n in names]})
            rows = cur.fetchall()
        return {name: TableStats(rows=float(r), total_bytes=int(b)) for name, r, b in rows}


# -- the target's catalog, for the run-aware model (catalog.py) ------------------------------

_SYSTEM = ("n.nspname NOT IN ('pg_catalog', 'information_schema') "
           "AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'")
_RELKINDS = {"r": "table", "p": "partitioned", "v": "view", "m": "matview", "S": "sequence",
             "i": "index", "I": "index", "f": "foreign"}
_CONTYPES = {"p": "CONSTR_PRIMARY", "u": "CONSTR_UNIQUE", "f": "CONSTR_FOREIGN",
             "x": "CONSTR_EXCLUSION", "n": "CONSTR_NOTNULL", "t": "CONSTR_TRIGGER"}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PgCatalog:
    """CatalogSource over a psycopg 3 connection: catalog reads only, no table locks."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def _rows(self, sql: str, params: Any = None) -> list[Any]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def search_path(self) -> list[str]:
        from .effects import parse_search_path

        (path, user), = self._rows("SELECT current_setting('search_path'), current_user")
        return [user if p == "$user" else p for p in parse_search_path(path)]

    def schemas(self) -> list[str]:
        return [r[0] for r in self._rows(
            f"SELECT n.nspname FROM pg_namespace n WHERE {_SYSTEM}")]

    def relations(self) -> list[tuple[str, str, str, bool]]:
        rows = self._rows(
            "SELECT n.nspname, c.relname, c.relkind::text, c.relpersistence = 't' "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE {_SYSTEM} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I', 'f')")
        return [(s, name, _RELKINDS[k], t) for s, name, k, t in rows]

    def types(self) -> list[tuple[str, str]]:
        return [(s, t) for s, t in self._rows(
            "SELECT n.nspname, t.typname FROM pg_type t "
            "JOIN pg_namespace n ON n.oid = t.typnamespace "
            f"WHERE {_SYSTEM} AND t.typtype IN ('b', 'e', 'd', 'r', 'm', 'c') "
            "AND t.typelem = 0 AND (t.typtype <> 'c' OR "
            "(SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')")]

    def functions(self) -> list[tuple[str, str]]:
        return [(s, f) for s, f in self._rows(
            "SELECT DISTINCT n.nspname, p.proname FROM pg_proc p "
            f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_SYSTEM}")]

    def extensions(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT extname FROM pg_extension")]

    def _oid(self, schema: str, table: str) -> str:
        return f"{_quote(schema)}.{_quote(table)}"

    def columns(self, schema: str, table: str) -> dict[str, Any]:
        from .catalog import EXISTING, Column
        from .parser import ParseError, parse_sql
        from .tree import type_info, unwrap

        rows = self._rows(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "a.attgenerated::text FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (self._oid(schema, table),))
        types: dict[str, Any] = {}
        if rows:
            # The server's own spelling of each type, read back through the same grammar the
            # migrations are parsed with, so old and new types compare like for like.
            ddl = "CREATE TABLE t (" + ", ".join(f"{_quote(n)} {t}" for n, t, _, _ in rows) + ")"
            try:
                elts = parse_sql(ddl)["stmts"][0]["stmt"]["CreateStmt"]["tableElts"]
                for elt in elts:
                    _, col = unwrap(elt)
                    types[col.get("colname", "")] = type_info(col.get("typeName"))
            except (ParseError, KeyError, IndexError):
                types = {}
        return {n: Column(types.get(n), gen or "", bool(nn), EXISTING, n)
                for n, _, nn, gen in rows}

    def checks(self, schema: str, table: str) -> dict[str, Any]:
        from .effects import check_of
        from .parser import ParseError, parse_sql
        from .tree import unwrap

        out: dict[str, Any] = {}
        for name, validated, definition in self._rows(
                "SELECT conname, convalidated, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = to_regclass(%s) AND contype = 'c'",
                (self._oid(schema, table),)):
            try:
                tree = parse_sql(f"ALTER TABLE t ADD CONSTRAINT c {definition}")
                cmd = tree["stmts"][0]["stmt"]["AlterTableStmt"]["cmds"][0]
                _, con = unwrap(unwrap(cmd)[1].get("def"))
            except (ParseError, KeyError, IndexError):
                continue
            out[name] = check_of(con, bool(validated))
        return out

    def constraints(self, schema: str, table: str) -> dict[str, str]:
        return {name: _CONTYPES.get(t, "CONSTR_" + t) for name, t in self._rows(
            "SELECT conname, contype::text FROM pg_constraint WHERE conrelid = to_regclass(%s) "
            "AND contype <> 'c'", (self._oid(schema, table),))}


# -- data probes: can a data-loss finding lose data? -----------------------------------------


class PgProbe:
    """DataProbe over a psycopg 3 connection.

    Each probe is one `SELECT EXISTS (...)` in its own (sub)transaction with a short
    `lock_timeout` (it never queues behind DDL: ACCESS SHARE waits only for ACCESS EXCLUSIVE,
    and gives up fast) and a `statement_timeout` (a column that is NULL everywhere is a full
    scan; a probe that is too slow answers "unknown", and the finding blocks as before).
    Not `reltuples`: it is 0 or -1 on a table that was never analysed.
    """

    def __init__(self, conn: Any, lock_timeout_ms: int = 200, statement_timeout_ms: int = 3000,
                 max_tables: int = 50) -> None:
        self.conn = conn
        self.lock_timeout_ms = lock_timeout_ms
        self.statement_timeout_ms = statement_timeout_ms
        self.max_tables = max_tables
        self.probes = 0  # how many queries ran (for the gate's summary)

    def has_data(self, subject: Any) -> tuple[bool | None, str]:
        label = subject.label or subject.name
        if subject.kind == "rows":
            has, why = self._exists(subject.name, None)
            return has, (f"{label} has rows" if has else f"{label} is empty" if has is False
                         else f"could not check whether {label} has rows ({why})")
        if subject.kind == "values":
            table = subject.label.rpartition(".")[0] or subject.name
            rows, why = self._exists(subject.name, None)
            if rows is False:
                return False, f"{table} is empty"
            if rows is True and subject.notnull:
                return True, f"{table} has rows and {label} is NOT NULL"
            if rows is None:
                return None, f"could not check whether {table} has rows ({why})"
            has, why = self._exists(subject.name, subject.column)
            return has, (f"{label} holds values" if has else f"{label} is NULL in every row"
                         if has is False else f"could not check {label} ({why})")
        if subject.kind == "sequence":
            return self._sequence(subject.name, label)
        if subject.kind == "schema":
            if len(subject.tables) > self.max_tables:
                return None, f"schema {label} holds {len(subject.tables)} tables (too many to check)"
            for t in subject.tables:
                has, why = self._exists(t, None)
                if has is None:
                    return None, f"could not check whether {t} has rows ({why})"
                if has:
                    return True, f"{t} in schema {label} has rows"
            if not subject.tables:
                return False, f"schema {label} holds no table"
            return False, f"every table in schema {label} is empty"
        return None, "nothing to check"

    def _exists(self, table: str, column: str | None) -> tuple[bool | None, str]:
        from psycopg import sql

        schema, _, name = table.rpartition(".")
        rel = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} {})").format(
            rel, sql.SQL("WHERE {} IS NOT NULL").format(sql.Identifier(column)) if column
            else sql.SQL(""))
        return self._ask(query)

    def _sequence(self, name: str, label: str) -> tuple[bool | None, str]:
        schema, _, seq = name.rpartition(".")
        has, why = self._ask(
            "SELECT CASE WHEN has_sequence_privilege(format('%%I.%%I', schemaname, sequencename),"
            " 'SELECT') THEN last_value IS NOT NULL END FROM pg_sequences "
            "WHERE schemaname = %s AND sequencename = %s", (schema, seq))
        if has is None:
            return None, f"could not check sequence {label} ({why or 'no privilege'})"
        return has, f"sequence {label} {'was used' if has else 'was never used'}"

    def _ask(self, query: Any, params: Any = None) -> tuple[bool | None, str]:
        import psycopg

        self.probes += 1
        nested = self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                if not nested:  # our own transaction: make it read-only, whatever the session
                    cur.execute("SET TRANSACTION READ ONLY")
                # SET LOCAL: ends with this (sub)transaction's parent; set back right after so
                # the rest of a read-only `plan` transaction keeps its own settings.
                cur.execute("SELECT current_setting('lock_timeout'), "
                            "current_setting('statement_timeout')")
                old = cur.fetchone()
                cur.execute("SELECT set_config('lock_timeout', %s, true), "
                            "set_config('statement_timeout', %s, true)",
                            (f"{self.lock_timeout_ms}ms", f"{self.statement_timeout_ms}ms"))
                cur.execute(query, params)
                row = cur.fetchone()
                if old is not None:
                    cur.execute("SELECT set_config('lock_timeout', %s, true), "
                                "set_config('statement_timeout', %s, true)", (old[0], old[1]))
        except psycopg.Error as exc:
            state = getattr(exc, "sqlstate", None)
            reason = {"55P03": "its lock was not granted in time",
                      "57014": "the probe was too slow",
                      "42501": "no privilege to read it",
                      "42P01": "it is gone"}.get(state or "", type(exc).__name__)
            return None, reason
        if row is None or row[0] is None:
            return None, "no answer"
        return bool(row[0]), ""
