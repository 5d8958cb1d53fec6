"""table-rewrite: statements that copy the whole table under ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import Context
from ..parser import Statement
from ..tree import Node, constraints, option_on, rel_name, type_info, unwrap, walk
from .base import Hit, Rule, rule
from .types import no_rewrite
from .util import added_columns, table_cmds, type_changes


class Rewrite(Rule):
    category = "table-rewrite"
    severity = "warning"
    lock = "ACCESS EXCLUSIVE + table rewrite"


@rule
class AlterColumnType(Rewrite):
    id, name = "RW01", "alter-column-type-rewrite"
    lock = "ACCESS EXCLUSIVE + table rewrite + index rebuild"
    summary = (
        "ALTER COLUMN TYPE rewrites the table and its indexes unless the change is "
        "binary-coercible."
    )
    safe_alternative = (
        "Add a new column, dual-write (trigger), backfill in batches, switch reads, drop the old "
        "column."
    )
    docs = (
        "No rewrite: varchar(n)->varchar(m>=n)/text, text<->varchar, numeric precision up at "
        "the same "
        "scale or to unconstrained, time/timestamp/interval precision up, cidr->inet; "
        "timestamp<->timestamptz only on PG12+ with TimeZone=UTC."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for change in type_changes(st, ctx):
            cmd, label, old, new = change.cmd, change.label, change.old, change.new
            if cmd.definition.get("raw_default"):
                yield Hit(f"{label} TYPE {new} USING ... rewrites the table", table=cmd.table)
                continue
            verdict = no_rewrite(old, new)
            if verdict:
                checks = ctx.checks_on(cmd.table, cmd.name)
                if checks:
                    yield Hit(
                        f"{label} {old} -> {new} needs no rewrite, but CHECK constraint "
                        f"{', '.join(checks)} on it is re-checked: a full scan under ACCESS "
                        "EXCLUSIVE",
                        table=cmd.table,
                    )
                continue
            if verdict is None and old is None:
                yield Hit(
                    f"{label} -> {new}: rewrites the table unless binary-coercible; cannot be "
                    f"decided "
                    "statically (current type unknown offline)",
                    table=cmd.table,
                )
            elif verdict is None:
                yield Hit(
                    f"{label} {old} -> {new}: rewrite depends on server settings/indexes",
                    table=cmd.table,
                )
            else:
                yield Hit(f"{label} {old} -> {new} rewrites the table", table=cmd.table)


# Functions PostgreSQL marks VOLATILE that people put in defaults.
VOLATILE = {
    "random",
    "random_normal",
    "clock_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "nextval",
    "setval",
    "txid_current",
    "pg_current_xact_id",
    "gen_random_bytes",
    "currval",
    "lastval",
}
# Built-ins that are STABLE or IMMUTABLE: a default using only these is metadata-only on PG11+.
NON_VOLATILE = {
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_date",
    "current_timestamp",
    "localtimestamp",
    "lower",
    "upper",
    "concat",
    "concat_ws",
    "length",
    "coalesce",
    "nullif",
    "abs",
    "round",
    "floor",
    "ceil",
    "trunc",
    "date_trunc",
    "make_interval",
    "make_date",
    "make_timestamp",
    "make_timestamptz",
    "to_jsonb",
    "to_json",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "array_fill",
    "md5",
    "btrim",
    "trim",
    "substr",
    "substring",
    "replace",
    "left",
    "right",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "greatest",
    "least",
    "timezone",
    "uuid_nil",
    "format",
    "current_setting",
    "array_length",
    "cardinality",
    "lpad",
    "rpad",
    "encode",
    "decode",
}


def default_expr(column_def: Node) -> Node | None:
    for con in constraints(column_def):
        if con.get("contype") == "CONSTR_DEFAULT":
            return con.get("raw_expr") or {}
    return None


def _is_null(expr: Node) -> bool:
    kind, body = unwrap(expr)
    return kind == "A_Const" and bool(body.get("isnull"))


@rule
class VolatileDefault(Rewrite):
    id, name = "RW02", "add-column-volatile-default"
    summary = "ADD COLUMN with a volatile DEFAULT (or any default before PG11) rewrites the table."
    safe_alternative = "ADD COLUMN without default; SET DEFAULT; backfill existing rows in batches."
    docs = (
        "PG11+: a non-volatile default (constants, now(), casts, stable built-ins) is metadata "
        "only."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in added_columns(st, ctx):
            expr = default_expr(cmd.definition)
            if expr is None or _is_null(expr):
                continue
            col = f"{cmd.table}.{cmd.definition.get('colname')}"
            if not ctx.pg(11):
                yield Hit(
                    f"ADD COLUMN {col} with a DEFAULT rewrites the table on {ctx.version_text}",
                    table=cmd.table,
                )
                continue
            funcs = [_fname(body) for name, body in walk(expr) if name == "FuncCall"]
            volatile = sorted({f for f in funcs if f in VOLATILE})
            unknown = sorted({f for f in funcs if f not in VOLATILE and f not in NON_VOLATILE})
            if volatile:
                yield Hit(
                    f"ADD COLUMN {col} DEFAULT {', '.join(volatile)}(): volatile, every row "
                    f"is rewritten",
                    table=cmd.table,
                )
            elif unknown:
                yield Hit(
                    f"ADD COLUMN {col} DEFAULT calls {', '.join(unknown)}(): rewrites the table if "
                    "volatile; cannot be decided statically",
                    table=cmd.table,
                )


def _fname(call: Node) -> str:
    from ..tree import strings

    parts = strings(call.get("funcname"))
    return parts[-1].lower() if parts else ""


SERIALS = {"serial", "bigserial", "smallserial"}


@rule
class SerialOrIdentity(Rewrite):
    id, name = "RW03", "add-serial-or-identity-column"
    summary = "ADD COLUMN serial/IDENTITY fills every existing row from a sequence: a full rewrite."
    safe_alternative = (
        "Add a nullable bigint, backfill from a sequence in batches, then add the constraints."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in added_columns(st, ctx):
            t = type_info(cmd.definition.get("typeName"))
            identity = any(
                c.get("contype") == "CONSTR_IDENTITY" for c in constraints(cmd.definition)
            )
            if identity or (t and t.name in SERIALS):
                what = "IDENTITY" if identity else str(t)
                yield Hit(
                    f"ADD COLUMN {cmd.table}.{cmd.definition.get('colname')} {what} rewrites "
                    f"the table",
                    table=cmd.table,
                )


@rule
class StoredGenerated(Rewrite):
    id, name = "RW04", "add-stored-generated-column"
    summary = "A STORED generated column (or SET EXPRESSION on one) computes every row: a rewrite."
    safe_alternative = (
        "Plain column + trigger/app-side computation, or a VIRTUAL column on PostgreSQL 18."
    )
    docs = (
        "PG18: VIRTUAL is the default when neither STORED nor VIRTUAL is written, and needs no "
        "rewrite."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if ctx.is_new(cmd.table):
                continue
            if cmd.subtype == "AT_AddColumn" and cmd.def_kind == "ColumnDef":
                for con in constraints(cmd.definition):
                    if (
                        con.get("contype") == "CONSTR_GENERATED"
                        and con.get("generated_kind", "s") == "s"
                    ):
                        yield Hit(
                            f"ADD COLUMN {cmd.table}.{cmd.definition.get('colname')} "
                            f"GENERATED .. STORED rewrites the table",
                            table=cmd.table,
                        )
            elif cmd.subtype == "AT_SetExpression":
                col = ctx.model.column(cmd.table, cmd.name)
                if col is not None and col.generated == "v":
                    continue
                note = (
                    ""
                    if col is not None
                    else " if the column is STORED (cannot be decided statically)"
                )
                yield Hit(
                    f"SET EXPRESSION on {cmd.table}.{cmd.name} rewrites the table{note}",
                    table=cmd.table,
                )


@rule
class SetLogged(Rewrite):
    id, name = "RW05", "set-logged"
    lock = "ACCESS EXCLUSIVE + rewrite + full WAL"
    summary = "SET LOGGED rewrites the table and writes all of it to WAL."
    safe_alternative = "Avoid on large tables."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if cmd.subtype == "AT_SetLogged" and not ctx.is_new(cmd.table):
                yield Hit(f"SET LOGGED on {cmd.table} rewrites it through WAL", table=cmd.table)


@rule
class SetTablespace(Rewrite):
    id, name = "RW06", "set-tablespace-or-access-method"
    lock = "ACCESS EXCLUSIVE + full copy"
    summary = "SET TABLESPACE / SET ACCESS METHOD copies the whole table under ACCESS EXCLUSIVE."
    safe_alternative = "pg_repack, or logical replication to a new table."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if cmd.subtype in ("AT_SetTableSpace", "AT_SetAccessMethod") and not ctx.is_new(
                cmd.table
            ):
                what = (
                    "SET TABLESPACE" if cmd.subtype == "AT_SetTableSpace" else "SET ACCESS METHOD"
                )
                note = (
                    ""
                    if cmd.subtype == "AT_SetTableSpace" or ctx.pg(15)
                    else f" (needs PostgreSQL 15+, {ctx.version_text})"
                )
                yield Hit(
                    f"{what} {cmd.name} on {cmd.table} copies the whole table{note}",
                    table=cmd.table,
                )


@rule
class VacuumFullCluster(Rewrite):
    id, name = "RW07", "vacuum-full-or-cluster"
    summary = "VACUUM FULL and CLUSTER rewrite the table under ACCESS EXCLUSIVE."
    safe_alternative = "pg_repack, or REPACK (CONCURRENTLY) on PostgreSQL 19+."
    statement_kinds = frozenset({"VacuumStmt", "ClusterStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "ClusterStmt":
            table = rel_name(st.node.get("relation"))
            if not ctx.is_new(table):
                yield Hit(
                    f"CLUSTER {table or '(all clustered tables)'} rewrites under ACCESS EXCLUSIVE",
                    table=table,
                )
            return
        if not option_on(st.node.get("options"), "full"):
            return  # VACUUM (FULL false) is a plain VACUUM
        rels = [rel_name(unwrap(r)[1].get("relation")) for r in st.node.get("rels", [])]
        for table in rels or [None]:
            if not ctx.is_new(table):
                yield Hit(
                    f"VACUUM FULL {table or '(whole database)'} rewrites under ACCESS EXCLUSIVE",
                    table=table,
                )
