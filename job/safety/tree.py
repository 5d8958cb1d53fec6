"""Small readers over libpg_query's JSON tree (nodes are {"NodeName": {fields}})."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Node = dict[str, Any]


def unwrap(wrapped: Any) -> tuple[str, Node]:
    """{"ColumnDef": {...}} -> ("ColumnDef", {...}); anything else -> ("", {})."""
    if isinstance(wrapped, dict) and len(wrapped) == 1:
        name, body = next(iter(wrapped.items()))
        if isinstance(body, dict) and name[:1].isupper():
            return name, body
    return "", {}


def walk(obj: Any) -> Iterator[tuple[str, Node]]:
    """Every wrapped node below obj, depth first."""
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            name, body = unwrap(cur)
            if name:
                yield name, body
                stack.extend(reversed(list(body.values())))
            else:
                stack.extend(reversed(list(cur.values())))
        elif isinstance(cur, list):
            stack.extend(reversed(cur))


def rel_name(rangevar: Node | None) -> str | None:
    """RangeVar fields -> 'schema.table' or 'table' (already case-folded by the parser)."""
    if not rangevar:
        return None
    rel = rangevar.get("relname")
    if not rel:
        return None
    schema = rangevar.get("schemaname")
    return f"{schema}.{rel}" if schema else rel


def base_name(qualified: str) -> str:
    return qualified.rsplit(".", 1)[-1]


def strings(items: Any) -> list[str]:
    """A list of String nodes -> their values."""
    out: list[str] = []
    for item in items or []:
        name, body = unwrap(item)
        if name == "String":
            out.append(body.get("sval", ""))
    return out


def object_names(drop: Node) -> list[str]:
    """DropStmt.objects -> dotted names ('s.t', 't.trigger', 'f')."""
    out: list[str] = []
    for obj in drop.get("objects", []):
        name, body = unwrap(obj)
        if name == "List":
            out.append(".".join(strings(body.get("items"))))
        elif name == "String":
            out.append(body.get("sval", ""))
        elif name == "TypeName":
            out.append(".".join(strings(body.get("names"))))
        elif name == "ObjectWithArgs":
            out.append(".".join(strings(body.get("objname"))))
        else:
            out.append("?")
    return out


# Type name aliases as the parser spells them, mapped to one canonical name.
_TYPE_ALIASES = {
    "int": "int4",
    "integer": "int4",
    "smallint": "int2",
    "bigint": "int8",
    "real": "float4",
    "float": "float8",
    "double precision": "float8",
    "character varying": "varchar",
    "character": "bpchar",
    "char": "bpchar",
    "decimal": "numeric",
    "bool": "bool",
    "boolean": "bool",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "serial4": "serial",
    "serial8": "bigserial",
    "serial2": "smallserial",
}


class TypeInfo:
    """A column type as written: canonical name plus integer type modifiers, e.g. varchar (20)."""

    __slots__ = ("name", "mods", "array")

    def __init__(self, name: str, mods: tuple[int, ...] = (), array: bool = False) -> None:
        self.name = name
        self.mods = mods
        self.array = array

    def __repr__(self) -> str:
        mods = f"({','.join(map(str, self.mods))})" if self.mods else ""
        return f"{self.name}{mods}{'[]' if self.array else ''}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TypeInfo) and (self.name, self.mods, self.array) == (
            other.name,
            other.mods,
            other.array,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.mods, self.array))


def type_info(type_name: Node | None) -> TypeInfo | None:
    if not type_name:
        return None
    names = strings(type_name.get("names"))
    if not names:
        return None
    name = names[-1].lower()
    name = _TYPE_ALIASES.get(name, name)
    mods: list[int] = []
    for mod in type_name.get("typmods", []) or []:
        kind, body = unwrap(mod)
        if kind == "A_Const":
            ival = body.get("ival")
            if isinstance(ival, dict):
                mods.append(int(ival.get("ival", 0)))
    return TypeInfo(name, tuple(mods), bool(type_name.get("arrayBounds")))


def constraints(column_def: Node) -> list[Node]:
    out = []
    for c in column_def.get("constraints", []) or []:
        name, body = unwrap(c)
        if name == "Constraint":
            out.append(body)
    return out


def contypes(column_def: Node) -> set[str]:
    return {c.get("contype", "") for c in constraints(column_def)}


def func_names(obj: Any) -> list[str]:
    """Names of every function called anywhere below obj (last name part, lower case)."""
    out = []
    for name, body in walk(obj):
        if name == "FuncCall":
            parts = strings(body.get("funcname"))
            if parts:
                out.append(parts[-1].lower())
    return out


def def_elem_names(items: Any) -> set[str]:
    out = set()
    for item in items or []:
        name, body = unwrap(item)
        if name == "DefElem":
            out.add(body.get("defname", ""))
    return out


def columndefs_of(st: Any, type_changes: bool = False) -> Iterator[tuple[str, Node]]:
    """(table, ColumnDef) for CREATE TABLE columns and ALTER TABLE ADD COLUMN (and, when asked,
    ALTER COLUMN TYPE, whose ColumnDef gets the column name filled in)."""
    if st.kind == "CreateStmt":
        table = rel_name(st.node.get("relation")) or "?"
        for elt in st.node.get("tableElts", []) or []:
            name, body = unwrap(elt)
            if name == "ColumnDef":
                yield table, body
    elif st.kind == "AlterTableStmt":
        table = rel_name(st.node.get("relation")) or "?"
        for raw in st.node.get("cmds", []):
            _, cmd = unwrap(raw)
            dname, d = unwrap(cmd.get("def"))
            if dname != "ColumnDef":
                continue
            if cmd.get("subtype") == "AT_AddColumn":
                yield table, d
            elif type_changes and cmd.get("subtype") == "AT_AlterColumnType":
                yield table, {**d, "colname": cmd.get("name", "")}


_FALSE = {"false", "off", "0", "no"}


def option_on(items: Any, name: str) -> bool:
    """Whether an option list (`(CONCURRENTLY)`, `(FULL false)`, `(VERBOSE, FULL 0)`) switches
    `name` on: a bare option is on; an explicit false/off/0/no is off."""
    on = False
    for item in items or []:
        kind, body = unwrap(item)
        if kind != "DefElem" or body.get("defname") != name:
            continue
        akind, arg = unwrap(body.get("arg"))
        if not akind:
            on = True
        elif akind == "String":
            on = str(arg.get("sval", "")).lower() not in _FALSE
        elif akind == "Integer":
            on = int(arg.get("ival", 0)) != 0
        elif akind == "Boolean":
            on = bool(arg.get("boolval"))
        else:
            on = True
    return on
