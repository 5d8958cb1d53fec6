"""Shared readers for rules."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..parser import Statement
from ..tree import Node, rel_name, type_info, unwrap


@dataclass(frozen=True)
class Cmd:
    table: str
    objtype: str
    subtype: str
    name: str  # column / constraint / trigger name the subcommand names
    body: Node  # AlterTableCmd fields
    def_kind: str  # node name of AlterTableCmd.def ("ColumnDef", "Constraint", ...)
    definition: Node


_last: tuple[Statement | None, list[Cmd]] = (None, [])


def alter_cmds(st: Statement) -> list[Cmd]:
    """The subcommands of an ALTER TABLE/TYPE/INDEX/VIEW statement.

    Thirty rules ask for the same statement in a row, so the last answer is kept."""
    global _last
    if _last[0] is st:
        return _last[1]
    cmds: list[Cmd] = []
    if st.kind == "AlterTableStmt":
        table = rel_name(st.node.get("relation")) or "?"
        objtype = st.node.get("objtype", "")
        for raw in st.node.get("cmds", []):
            _, c = unwrap(raw)
            dk, d = unwrap(c.get("def"))
            cmds.append(Cmd(table, objtype, c.get("subtype", ""), c.get("name", ""), c, dk, d))
    _last = (st, cmds)
    return cmds


def table_cmds(st: Statement) -> Iterator[Cmd]:
    """ALTER TABLE subcommands on tables (not ALTER TYPE/INDEX/VIEW ...)."""
    for cmd in alter_cmds(st):
        if cmd.objtype in ("OBJECT_TABLE", "OBJECT_FOREIGN_TABLE", "OBJECT_MATVIEW"):
            yield cmd


def added_columns(st: Statement, ctx: Any) -> Iterator[Cmd]:
    """ADD COLUMN subcommands (with a column definition) on tables that existed before this
    migration: the ones lock and rewrite rules care about."""
    for cmd in table_cmds(st):
        if cmd.subtype == "AT_AddColumn" and cmd.def_kind == "ColumnDef" and not ctx.is_new(
                cmd.table):
            yield cmd


@dataclass(frozen=True)
class TypeChange:
    cmd: Cmd
    label: str  # table.column
    old: Any  # the column's type before (database catalog, or the migrations so far), or None
    new: Any


def type_changes(st: Statement, ctx: Any) -> Iterator[TypeChange]:
    """ALTER COLUMN .. TYPE on tables that existed before this migration."""
    for cmd in table_cmds(st):
        if cmd.subtype != "AT_AlterColumnType" or ctx.is_new(cmd.table):
            continue
        col = ctx.model.column(cmd.table, cmd.name)
        yield TypeChange(cmd, f"{cmd.table}.{cmd.name}", col.type if col else None,
                         type_info(cmd.definition.get("typeName")))


def qualified(schema_and_name: list[str]) -> str:
    return ".".join(schema_and_name)


def column_label(cmd: Cmd) -> str:
    col = cmd.definition.get("colname") if cmd.def_kind == "ColumnDef" else None
    return f"{cmd.table}.{col or cmd.name}"
