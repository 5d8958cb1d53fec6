"""data-loss: every finding blocks `run` until approved in the file (or deploy-wide)."""

from __future__ import annotations

from collections.abc import Iterator

from ..catalog import EXISTING, NEW, SYSTEM, TYPE
from ..context import Context
from ..effects import DROP_NAMESPACES
from ..model import DataSubject
from ..parser import Statement
from ..tree import object_names, rel_name, unwrap
from .base import Hit, Rule, rule
from .types import lossy, maybe_lossy_target
from .util import alter_cmds, table_cmds, type_changes

CASCADE_NOTE = " (CASCADE: what depends on it is dropped too)"


class DataLoss(Rule):
    category = "data-loss"
    severity = "error"
    blocking = True


@rule
class DropTable(DataLoss):
    id, name = "DL01", "drop-table"
    lock = "ACCESS EXCLUSIVE"
    summary = "DROP TABLE deletes the table and every row in it."
    safe_alternative = (
        "Expand/contract: stop reads and writes in the application first (release N), optionally "
        "rename to *_deprecated or take a backup, and DROP in a later release."
    )
    statement_kinds = frozenset({"DropStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.node.get("removeType") not in ("OBJECT_TABLE", "OBJECT_FOREIGN_TABLE"):
            return
        cascade = CASCADE_NOTE if st.node.get("behavior") == "DROP_CASCADE" else ""
        for name in object_names(st.node):
            ref = ctx.ref(name)
            if ref.fresh or ref.status == SYSTEM:
                continue  # created by this run, or not there: nothing from before to lose
            yield Hit(f"DROP TABLE {name}: the table and all its rows are deleted{cascade}",
                      table=name, subject=ctx.rows_subject(name))


@rule
class DropColumn(DataLoss):
    id, name = "DL02", "drop-column"
    lock = "ACCESS EXCLUSIVE (catalog only, fast)"
    summary = "DROP COLUMN (or ALTER TYPE .. DROP ATTRIBUTE) deletes the column's data."
    safe_alternative = (
        "Three releases: make the application ignore the column (M), DROP it (M+1), remove the "
        "ignore (M+2)."
    )
    docs = "PG18 VIRTUAL generated columns hold no data and are not reported when known."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in alter_cmds(st):
            if cmd.objtype not in ("OBJECT_TABLE", "OBJECT_FOREIGN_TABLE", "OBJECT_TYPE"):
                continue
            if cmd.subtype != "AT_DropColumn":
                continue
            cascade = CASCADE_NOTE if cmd.body.get("behavior") == "DROP_CASCADE" else ""
            if cmd.objtype == "OBJECT_TYPE":
                if ctx.is_new_object(cmd.table, TYPE):
                    continue
                yield Hit(f"drops attribute {cmd.table}.{cmd.name} of a composite type: its "
                          f"values in every column of that type are lost{cascade}")
                continue
            if ctx.is_new(cmd.table) or ctx.model.column_status(cmd.table, cmd.name) in (
                    NEW, "absent"):
                continue  # added by this run, or not there (DROP COLUMN IF EXISTS)
            col = ctx.model.column(cmd.table, cmd.name)
            if col is not None and col.generated == "v":
                continue
            yield Hit(f"drops column {cmd.table}.{cmd.name} and its data{cascade}",
                      table=cmd.table, subject=ctx.values_subject(cmd.table, cmd.name))


@rule
class DropSchema(DataLoss):
    id, name = "DL03", "drop-schema"
    lock = "ACCESS EXCLUSIVE on every contained object"
    summary = "DROP SCHEMA removes the schema (with CASCADE: every table in it)."
    safe_alternative = (
        "Drop the contained objects explicitly after deprecation; never CASCADE blindly."
    )
    statement_kinds = frozenset({"DropStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.node.get("removeType") != "OBJECT_SCHEMA":
            return
        cascade = st.node.get("behavior") == "DROP_CASCADE"
        for name in object_names(st.node):
            status = ctx.model.schema_status(name)
            if status in (NEW, "absent", SYSTEM):
                continue
            subject = None
            if status == EXISTING:
                tables = tuple(sorted(o.db_name for o in ctx.model.schema_tables(name)
                                      if o.origin == EXISTING and o.db_name))
                subject = DataSubject("schema", name, label=name, tables=tables)
            what = (" CASCADE: every object in it is dropped, with its data" if cascade
                    else " (fails unless the schema is empty)")
            yield Hit(f"DROP SCHEMA {name}{what}", subject=subject)


@rule
class DropDatabase(DataLoss):
    id, name = "DL04", "drop-database"
    lock = "exclusive use of the database"
    summary = "DROP DATABASE deletes a whole database."
    safe_alternative = "Never in a migration."
    statement_kinds = frozenset({"DropdbStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        yield Hit(f"DROP DATABASE {st.node.get('dbname', '?')}")


@rule
class Truncate(DataLoss):
    id, name = "DL05", "truncate"
    lock = "ACCESS EXCLUSIVE"
    summary = "TRUNCATE deletes every row (CASCADE: also rows of referencing tables)."
    safe_alternative = (
        "Delete in batches with an explicit WHERE, or deprecate; never TRUNCATE ... CASCADE."
    )
    statement_kinds = frozenset({"TruncateStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for r in st.node.get("relations", []):
            _, rv = unwrap(r)
            table = rel_name(rv)
            if not table or ctx.is_new(table) or ctx.ref(table).status == SYSTEM:
                continue
            extra = []
            if st.node.get("behavior") == "DROP_CASCADE":
                extra.append("CASCADE also empties every table with a foreign key to it")
            if st.node.get("restart_seqs"):
                extra.append("RESTART IDENTITY resets its sequences")
            tail = f" ({'; '.join(extra)})" if extra else ""
            cascade = st.node.get("behavior") == "DROP_CASCADE"
            yield Hit(f"TRUNCATE {table} deletes every row{tail}", table=table,
                      subject=None if cascade else ctx.rows_subject(table))


def _always_true(where: object) -> bool:
    if where is None:
        return True
    kind, body = unwrap(where)
    if kind == "A_Const":
        return bool((body.get("boolval") or {}).get("boolval"))
    return False


@rule
class UnboundedDml(DataLoss):
    id, name = "DL06", "unbounded-dml"
    lock = "ROW EXCLUSIVE + row locks for the whole transaction"
    summary = "DELETE/UPDATE/MERGE on an existing table changes or removes existing rows."
    safe_alternative = (
        "Backfill/delete in bounded batches outside the DDL transaction; keep a reversible copy."
    )
    docs = (
        "A DELETE/UPDATE with a WHERE is still a data migration; how many rows it touches cannot "
        "be seen offline."
    )
    statement_kinds = frozenset({"DeleteStmt", "UpdateStmt", "MergeStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        table = rel_name(st.node.get("relation"))
        if not table or ctx.is_new(table) or ctx.ref(table).status == SYSTEM:
            return  # new table (seed rows of this run), or a system catalog (AN07)
        subject = ctx.rows_subject(table)
        verb = {"DeleteStmt": "DELETE", "UpdateStmt": "UPDATE", "MergeStmt": "MERGE"}[st.kind]
        if st.kind == "MergeStmt":
            kinds = set()
            for w in st.node.get("mergeWhenClauses", []):
                _, wc = unwrap(w)
                if wc.get("matchKind") == "MERGE_WHEN_MATCHED":
                    kinds.add(wc.get("commandType"))
            changed = sorted(
                k.replace("CMD_", "") for k in kinds if k in ("CMD_DELETE", "CMD_UPDATE")
            )
            if changed:
                yield Hit(f"MERGE INTO {table} {'/'.join(changed)}s matched rows", table=table,
                          subject=subject)
            return
        if _always_true(st.node.get("whereClause")):
            yield Hit(f"{verb} on {table} without a WHERE clause touches every row", table=table,
                      subject=subject)
        else:
            yield Hit(
                f"{verb} on {ctx.label(table)} is a data migration (how many rows it touches "
                "cannot be decided statically)",
                table=table,
                subject=subject,
            )


@rule
class CascadeDrop(DataLoss):
    id, name = "DL07", "cascade-drop"
    lock = "ACCESS EXCLUSIVE on every dependent"
    summary = "CASCADE drops every dependent object too (views, FKs, columns of a dropped type)."
    safe_alternative = "List dependents explicitly and drop them one by one after review."
    statement_kinds = frozenset({"DropStmt", "AlterTableStmt", "DropOwnedStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "DropStmt" and st.node.get("behavior") == "DROP_CASCADE":
            rtype = st.node.get("removeType", "")
            if rtype in _REPORTED_ELSEWHERE:
                return  # DL01 / DL03 report the statement, with the CASCADE
            ns = _NAMESPACE.get(rtype)
            names = [n for n in object_names(st.node)
                     if ns is None or not ctx.is_new_object(n, ns)]
            if names:
                kind = OBJECT_WORDS.get(rtype, rtype.replace("OBJECT_", "").lower())
                data = (" (columns of that type go with their data)"
                        if rtype in ("OBJECT_TYPE", "OBJECT_DOMAIN", "OBJECT_EXTENSION") else "")
                yield Hit(f"DROP {kind.upper()} {', '.join(names)} CASCADE drops every "
                          f"dependent object{data}")
        elif st.kind == "DropOwnedStmt":
            yield Hit("DROP OWNED drops every object the role owns")
        elif st.kind == "AlterTableStmt":
            for cmd in table_cmds(st):
                if (cmd.body.get("behavior") == "DROP_CASCADE"
                        and cmd.subtype == "AT_DropConstraint" and not ctx.is_new(cmd.table)):
                    yield Hit(
                        f"DROP CONSTRAINT {cmd.name} on {cmd.table} CASCADE drops what depends "
                        "on it",
                        table=cmd.table,
                    )


@rule
class LossyTypeChange(DataLoss):
    id, name = "DL08", "lossy-type-change"
    lock = "ACCESS EXCLUSIVE + rewrite"
    summary = "ALTER COLUMN TYPE with USING, or to a narrower type, can silently round or truncate."
    safe_alternative = (
        "New column + dual write + verified backfill + swap; compare counts/hashes before dropping "
        "the old column."
    )
    docs = (
        "Checked on PostgreSQL 15: varchar(20)->varchar(3) errors, but USING v::varchar(3) "
        "truncates "
        "silently; numeric(10,2)->numeric(10,0) and numeric->int round; timestamptz->date "
        "drops the time."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for change in type_changes(st, ctx):
            cmd, label, old, new = change.cmd, change.label, change.old, change.new
            if ctx.model.column_status(cmd.table, cmd.name) in (NEW, "absent"):
                continue  # a column this run added holds nothing from before
            subject = ctx.values_subject(cmd.table, cmd.name)
            if cmd.definition.get("raw_default"):
                yield Hit(
                    f"{label} TYPE {new} USING ...: the USING expression can silently "
                    f"truncate or round",
                    table=cmd.table,
                    subject=subject,
                )
                continue
            verdict = lossy(old, new)
            if verdict:
                yield Hit(
                    f"{label} {old} -> {new} narrows the type (rounds, truncates or fails)",
                    table=cmd.table,
                    subject=subject,
                )
            elif verdict is None and maybe_lossy_target(new):
                yield Hit(
                    f"{label} -> {new}: cannot be decided statically (current type of "
                    f"{label} unknown offline); {new} may round or truncate",
                    table=cmd.table,
                )


@rule
class DropSequence(DataLoss):
    id, name = "DL09", "drop-sequence"
    lock = "ACCESS EXCLUSIVE"
    summary = "DROP SEQUENCE / DROP IDENTITY loses the sequence position writers rely on."
    safe_alternative = "Keep the sequence until all writers have moved; record its last value."
    statement_kinds = frozenset({"DropStmt", "AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "DropStmt" and st.node.get("removeType") == "OBJECT_SEQUENCE":
            for name in object_names(st.node):
                ref = ctx.ref(name)
                if ref.fresh:
                    continue
                subject = None
                if ref.existing and ref.obj is not None and ref.obj.db_name:
                    subject = DataSubject("sequence", ref.obj.db_name, label=name)
                yield Hit(f"DROP SEQUENCE {name}: its current value is lost", subject=subject)
        for cmd in table_cmds(st):
            if cmd.subtype == "AT_DropIdentity" and not ctx.is_new(cmd.table):
                yield Hit(
                    f"DROP IDENTITY on {cmd.table}.{cmd.name} drops its sequence", table=cmd.table,
                    subject=ctx.rows_subject(cmd.table),
                )


@rule
class SetUnlogged(DataLoss):
    id, name = "DL10", "set-unlogged"
    lock = "ACCESS EXCLUSIVE + rewrite"
    summary = "SET UNLOGGED: the table is emptied after a crash and not replicated to standbys."
    safe_alternative = "Don't; for a bulk load use a separate staging table."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if cmd.subtype == "AT_SetUnLogged" and not ctx.is_new(cmd.table):
                yield Hit(
                    f"SET UNLOGGED on {cmd.table}: truncated after crash recovery, absent on "
                    f"standbys",
                    table=cmd.table,
                    subject=ctx.rows_subject(cmd.table),
                )


_REPORTED_ELSEWHERE = {"OBJECT_TABLE", "OBJECT_FOREIGN_TABLE", "OBJECT_SCHEMA"}
_NAMESPACE = {k: v for k, v in DROP_NAMESPACES.items() if k not in _REPORTED_ELSEWHERE}
# How SQL spells an object type, for messages (never the parse tree's enum name).
OBJECT_WORDS = {
    "OBJECT_TABLE": "table",
    "OBJECT_FOREIGN_TABLE": "foreign table",
    "OBJECT_VIEW": "view",
    "OBJECT_MATVIEW": "materialized view",
    "OBJECT_SEQUENCE": "sequence",
    "OBJECT_INDEX": "index",
    "OBJECT_TYPE": "type",
    "OBJECT_DOMAIN": "domain",
    "OBJECT_FUNCTION": "function",
    "OBJECT_PROCEDURE": "procedure",
    "OBJECT_ROUTINE": "routine",
    "OBJECT_AGGREGATE": "aggregate",
    "OBJECT_EXTENSION": "extension",
    "OBJECT_SCHEMA": "schema",
    "OBJECT_TRIGGER": "trigger",
    "OBJECT_POLICY": "policy",
    "OBJECT_RULE": "rule",
    "OBJECT_PUBLICATION": "publication",
    "OBJECT_TABCONSTRAINT": "constraint",
    "OBJECT_COLUMN": "column",
    "OBJECT_COLLATION": "collation",
    "OBJECT_CONVERSION": "conversion",
    "OBJECT_OPERATOR": "operator",
    "OBJECT_STATISTIC_EXT": "statistics",
    "OBJECT_EVENT_TRIGGER": "event trigger",
    "OBJECT_FOREIGN_SERVER": "server",
    "OBJECT_FDW": "foreign data wrapper",
    "OBJECT_ROLE": "role",
    "OBJECT_TSCONFIGURATION": "text search configuration",
    "OBJECT_TSDICTIONARY": "text search dictionary",
}
