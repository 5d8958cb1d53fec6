"""data-dependent: statements that succeed or fail depending on the rows already there."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import Context
from ..parser import Statement
from ..tree import constraints, rel_name, type_info
from .base import Hit, Rule, rule
from .rewrite import SERIALS
from .util import added_columns, table_cmds


class DataDependent(Rule):
    category = "data-dependent"
    severity = "warning"


@rule
class AddRequiredColumn(DataDependent):
    id, name = "DD01", "add-required-column"
    lock = "ACCESS EXCLUSIVE"
    summary = (
        "ADD COLUMN .. NOT NULL without a DEFAULT fails on a non-empty table, and old INSERTs fail."
    )
    safe_alternative = (
        "Add it nullable or with a non-volatile DEFAULT (fast on PG11+), backfill, then NOT "
        "NULL via "
        "the LK08 recipe."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in added_columns(st, ctx):
            kinds = {c.get("contype") for c in constraints(cmd.definition)}
            t = type_info(cmd.definition.get("typeName"))
            if "CONSTR_NOTNULL" not in kinds and "CONSTR_PRIMARY" not in kinds:
                continue
            if kinds & {"CONSTR_DEFAULT", "CONSTR_IDENTITY", "CONSTR_GENERATED"} or (
                t and t.name in SERIALS
            ):
                continue
            yield Hit(
                f"ADD COLUMN {cmd.table}.{cmd.definition.get('colname')} NOT NULL without "
                f"DEFAULT fails "
                "if the table has rows",
                table=cmd.table,
            )


@rule
class UniqueOnExistingData(DataDependent):
    id, name = "DD02", "unique-on-existing-data"
    lock = "see LK01/LK04"
    summary = (
        "A unique index/constraint on existing rows fails on duplicates (CIC leaves an INVALID "
        "index)."
    )
    safe_alternative = (
        "Deduplicate first; on retry drop the INVALID index left by a failed CONCURRENTLY build."
    )
    statement_kinds = frozenset({"IndexStmt", "AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "IndexStmt":
            table = rel_name(st.node.get("relation"))
            if st.node.get("unique") and not ctx.is_new(table):
                yield Hit(f"UNIQUE index on {table} fails if duplicates exist", table=table)
            return
        for cmd in table_cmds(st):
            if (
                cmd.subtype == "AT_AddConstraint"
                and cmd.definition.get("contype") in ("CONSTR_UNIQUE", "CONSTR_PRIMARY")
                and not cmd.definition.get("indexname")
                and not ctx.is_new(cmd.table)
            ):
                kind = "UNIQUE" if cmd.definition["contype"] == "CONSTR_UNIQUE" else "PRIMARY KEY"
                yield Hit(f"{kind} on {cmd.table} fails if duplicates exist", table=cmd.table)


@rule
class NotNullOnExistingData(DataDependent):
    id, name = "DD03", "not-null-on-existing-data"
    lock = "see LK08"
    summary = "SET NOT NULL / VALIDATE CONSTRAINT fails if existing rows violate it."
    safe_alternative = "Backfill first (UPDATE .. WHERE col IS NULL in batches)."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if ctx.is_new(cmd.table):
                continue
            if cmd.subtype == "AT_SetNotNull":
                column = ctx.model.column(cmd.table, cmd.name)
                if (column is not None and column.notnull) or ctx.not_null_proven(
                        cmd.table, cmd.name):
                    continue  # already NOT NULL, or a validated CHECK proves it
                yield Hit(
                    f"SET NOT NULL on {cmd.table}.{cmd.name} fails if NULLs exist", table=cmd.table
                )
            elif (
                cmd.subtype == "AT_AddConstraint"
                and cmd.definition.get("contype") == "CONSTR_NOTNULL"
                and not cmd.definition.get("skip_validation")
            ):
                yield Hit(
                    f"NOT NULL constraint on {cmd.table} fails if NULLs exist", table=cmd.table
                )
            elif cmd.subtype == "AT_ValidateConstraint":
                known = ctx.constraint_kind(cmd.table, cmd.name)
                kind = {"CONSTR_CHECK": "CHECK", "CONSTR_FOREIGN": "FOREIGN KEY",
                        "CONSTR_NOTNULL": "NOT NULL"}.get(known or "", "(kind unknown offline)")
                yield Hit(
                    f"VALIDATE CONSTRAINT {cmd.name} {kind} on {cmd.table} fails if existing "
                    f"rows violate it",
                    table=cmd.table,
                )
