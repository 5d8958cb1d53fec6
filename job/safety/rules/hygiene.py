"""hygiene: style that avoids future pain. Informational unless a team promotes them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..context import Context
from ..parser import Statement
from ..tree import Node, TypeInfo, columndefs_of, object_names, rel_name, strings, type_info, unwrap
from .base import Hit, Rule, rule


class Hygiene(Rule):
    category = "hygiene"
    severity = "info"
    lock = "n/a"


def _types(st: Statement) -> list[tuple[str, str, TypeInfo]]:
    """(table, column, type) of the columns ``st`` defines. Five rules ask about the same
    statement one after the other: the answer for the last statement is kept."""
    if _last_types[0] is st:
        return _last_types[1]
    out = []
    for table, col in columndefs_of(st, type_changes=True):
        t = type_info(col.get("typeName"))
        if t is not None:
            out.append((table, col.get("colname", "?"), t))
    _last_types[:] = [st, out]
    return out


_last_types: list[Any] = [None, []]


_TYPED_KINDS = frozenset({"CreateStmt", "AlterTableStmt"})


@rule
class PreferBigint(Hygiene):
    id, name = "HY01", "prefer-bigint-over-int/smallint"
    summary = "int/smallint keys run out; changing them later rewrites the table."
    safe_alternative = "Use bigint (bigint identity for keys)."
    statement_kinds = _TYPED_KINDS

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for table, col, t in _types(st):
            if t.name in ("int2", "int4", "serial", "smallserial"):
                yield Hit(f"{table}.{col} is {t}: prefer bigint")


@rule
class PreferIdentity(Hygiene):
    id, name = "HY02", "prefer-identity-over-serial"
    summary = "serial types have ownership and permission quirks identity columns don't."
    safe_alternative = "bigint GENERATED ALWAYS AS IDENTITY."
    statement_kinds = _TYPED_KINDS

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for table, col, t in _types(st):
            if t.name in ("serial", "bigserial", "smallserial"):
                yield Hit(f"{table}.{col} is {t}: prefer GENERATED ... AS IDENTITY")


@rule
class PreferText(Hygiene):
    id, name = "HY03", "prefer-text-over-varchar"
    summary = "varchar(n) limits need a migration (sometimes a rewrite) to change."
    safe_alternative = "text, with a CHECK (length(col) <= n) if a limit is really needed."
    statement_kinds = _TYPED_KINDS

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for table, col, t in _types(st):
            if t.name == "varchar" and t.mods:
                yield Hit(f"{table}.{col} is {t}: prefer text")


@rule
class PreferTimestamptz(Hygiene):
    id, name = "HY04", "prefer-timestamptz"
    summary = (
        "timestamp without time zone stores wall-clock times that shift with the session zone."
    )
    safe_alternative = "timestamptz."
    statement_kinds = _TYPED_KINDS

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for table, col, t in _types(st):
            if t.name == "timestamp":
                yield Hit(f"{table}.{col} is timestamp without time zone: prefer timestamptz")


@rule
class BanChar(Hygiene):
    id, name = "HY05", "ban-char-field"
    summary = "char(n) pads with spaces and compares surprisingly."
    safe_alternative = "text (or varchar)."
    statement_kinds = _TYPED_KINDS

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for table, col, t in _types(st):
            if t.name == "bpchar":
                yield Hit(f"{table}.{col} is {t}: prefer text")


# The parser already truncated long names (with only a NOTICE), so look at the source text:
# identifiers outside string literals, comments and dollar-quoted bodies.
_NOT_CODE = re.compile(r"'(?:[^']|'')*'|\$([A-Za-z_]\w*)?\$.*?\$\1\$|--[^\n]*|/\*.*?\*/", re.S)
_IDENT = re.compile(r'"((?:[^"]|"")+)"|([A-Za-z_\x80-\uffff][\w$\x80-\uffff]*)')


@rule
class IdentifierTooLong(Hygiene):
    id, name = "HY06", "identifier-too-long"
    severity = "warning"
    summary = "Identifiers longer than 63 bytes are silently truncated by PostgreSQL."
    safe_alternative = "Shorter names (watch generated index/constraint names)."

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if len(st.text) < 64:
            return
        code = _NOT_CODE.sub(" ", st.text)
        # ASCII code without a quoted name and no 64-character word holds no name over 63
        # bytes: most statements skip the tokenising below (a third of the gate's time).
        if code.isascii() and '"' not in code and max(map(len, code.split()), default=0) < 64:
            return
        seen: set[str] = set()
        for m in _IDENT.finditer(code):
            name = m.group(1) or m.group(2)
            size = len(name.encode("utf-8"))
            if size > 63 and name not in seen:
                seen.add(name)
                yield Hit(
                    f"identifier {name[:40]}... is {size} bytes: PostgreSQL truncates it to 63"
                )


@rule
class RequireSchema(Hygiene):
    id, name = "HY07", "require-table-schema"
    summary = "Unqualified table names depend on search_path at deploy time."
    safe_alternative = "Qualify: schema.table."
    default_enabled = False  # opt-in: most projects live in one schema
    docs = 'Opt-in (enable = ["HY07"]).'

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for rv in _named_relations(st):
            if rv.get("relname") and not rv.get("schemaname") and rv.get("relpersistence") != "t":
                yield Hit(f"{rv['relname']} is not schema-qualified")
                return
        if st.kind == "DropStmt" and st.node.get("removeType") in _DROPPED_RELATIONS:
            for name in object_names(st.node):
                if "." not in name:
                    yield Hit(f"{name} is not schema-qualified")
                    return


_DROPPED_RELATIONS = {"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_SEQUENCE",
                      "OBJECT_FOREIGN_TABLE", "OBJECT_INDEX"}


def _named_relations(st: Statement) -> Iterator[Node]:
    n = st.node
    for key in ("relation", "view", "sequence"):
        rv = n.get(key)
        if isinstance(rv, dict):
            yield rv
    if st.kind == "CreateTableAsStmt":
        yield (n.get("into") or {}).get("rel") or {}
    if st.kind == "SelectStmt" and n.get("intoClause"):
        yield n["intoClause"].get("rel") or {}
    if st.kind == "CreateForeignTableStmt":
        yield (n.get("base") or {}).get("relation") or {}


@rule
class DuplicateColumn(Hygiene):
    id, name = "HY08", "duplicate-column-assignment"
    severity = "warning"
    summary = "The same column assigned or defined twice in one statement (an error, or a typo)."
    safe_alternative = "Assign/define each column once."
    docs = (
        "Assignments to different fields or elements of one column (`SET a.x = 1, a.y = 2`, "
        "`a[1]`, `a[2]`) are fine; CREATE VIEW / CREATE TABLE AS / SELECT INTO with two output "
        "columns of one name fail."
    )
    statement_kinds = frozenset({"UpdateStmt", "InsertStmt", "CreateStmt", "ViewStmt",
                                 "CreateTableAsStmt", "SelectStmt", "MergeStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        n = st.node
        where = rel_name(n.get("relation"))
        groups: list[tuple[str, list[tuple[str, bool]]]] = []
        if st.kind == "CreateStmt":
            groups.append(("defined", [(c.get("colname", ""), False)
                                       for _, c in columndefs_of(st)]))
        elif st.kind == "UpdateStmt":
            groups.append(("assigned", _assignments(n.get("targetList"))))
        elif st.kind == "InsertStmt":
            groups.append(("listed", _assignments(n.get("cols"))))
            conflict = n.get("onConflictClause") or {}
            groups.append(("assigned in ON CONFLICT DO UPDATE",
                           _assignments(conflict.get("targetList"))))
        elif st.kind == "MergeStmt":
            for w in n.get("mergeWhenClauses", []) or []:
                _, wc = unwrap(w)
                what = "assigned" if wc.get("commandType") == "CMD_UPDATE" else "listed"
                groups.append((f"{what} in MERGE", _assignments(wc.get("targetList"))))
        elif st.kind == "ViewStmt":
            where = rel_name(n.get("view"))
            names = strings(n.get("aliases")) or output_names(n.get("query"))
            groups.append(("output by the view", [(x, False) for x in names]))
        elif st.kind == "CreateTableAsStmt":
            into = n.get("into") or {}
            where = rel_name(into.get("rel"))
            names = strings(into.get("colNames")) or output_names(n.get("query"))
            groups.append(("output", [(x, False) for x in names]))
        elif st.kind == "SelectStmt" and n.get("intoClause"):
            where = rel_name(n["intoClause"].get("rel"))
            groups.append(("output", [(x, False) for x in output_names({"SelectStmt": n})]))
        for verb, items in groups:
            dup = _duplicates(items)
            if dup:
                yield Hit(f"column(s) {', '.join(dup)} {verb} twice in {where}")


def _assignments(targets: object) -> list[tuple[str, bool]]:
    """(column, through a field/subscript) for SET lists and INSERT column lists."""
    out = []
    for t in targets or []:  # type: ignore[attr-defined]
        _, rt = unwrap(t)
        if rt.get("name"):
            out.append((rt["name"], bool(rt.get("indirection"))))
    return out


def _duplicates(items: list[tuple[str, bool]]) -> list[str]:
    """Names given twice where at least one use is the whole column (PostgreSQL rejects it;
    `a.x` and `a.y`, or `a[1]` and `a[2]`, are separate parts of one column and allowed)."""
    seen: dict[str, list[bool]] = {}
    for name, partial in items:
        if name:
            seen.setdefault(name, []).append(partial)
    return sorted(name for name, uses in seen.items() if len(uses) > 1 and not all(uses))


def output_names(query: object) -> list[str]:
    """Column names a SELECT produces, where the text decides them (else left out)."""
    kind, sel = unwrap(query)
    if kind != "SelectStmt":
        return []
    if sel.get("op") not in (None, "SETOP_NONE") and sel.get("larg"):
        return output_names({"SelectStmt": sel["larg"]})
    out = []
    for t in sel.get("targetList", []) or []:
        _, rt = unwrap(t)
        name = rt.get("name") or _figure_name(rt.get("val"))
        if name:
            out.append(name)
    return out


def _figure_name(val: object) -> str | None:
    kind, body = unwrap(val)
    if kind == "ColumnRef":
        fields = body.get("fields") or []
        last_kind, last = unwrap(fields[-1]) if fields else ("", {})
        return last.get("sval") if last_kind == "String" else None
    if kind == "FuncCall":
        names = strings(body.get("funcname"))
        return names[-1] if names else None
    if kind == "TypeCast":
        return _figure_name(body.get("arg"))
    return None


@rule
class EnumOrdering(Hygiene):
    id, name = "HY09", "enum-value-ordering / avoid enums"
    summary = (
        "Enum values can't be removed and sort by position; ADD VALUE without BEFORE/AFTER appends."
    )
    safe_alternative = (
        "A lookup table or a CHECK constraint; give ADD VALUE an explicit BEFORE/AFTER."
    )
    statement_kinds = frozenset({"AlterEnumStmt", "CreateEnumStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        name = ".".join(strings(st.node.get("typeName")))
        if st.kind == "CreateEnumStmt":
            yield Hit(f"CREATE TYPE {name} AS ENUM: values can never be removed")
        elif not st.node.get("oldVal") and not st.node.get("newValNeighbor"):
            yield Hit(f"ADD VALUE '{st.node.get('newVal')}' to {name} without BEFORE/AFTER")


@rule
class NamingWidth(Hygiene):
    id, name = "HY10", "naming / alignment / index width"
    summary = (
        "Indexes wider than the configured column count, or names that break the team's pattern."
    )
    safe_alternative = (
        "Narrower indexes; names following `index_name_pattern` / `constraint_name_pattern`."
    )
    docs = (
        "Config: max_index_columns (default 3), index_name_pattern, constraint_name_pattern "
        "(regexes)."
    )
    statement_kinds = frozenset({"IndexStmt", "AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        cfg = ctx.config
        if st.kind == "IndexStmt":
            cols = len(st.node.get("indexParams", []) or [])
            if cols > cfg.max_index_columns:
                yield Hit(
                    f"index on {rel_name(st.node.get('relation'))} has {cols} columns (> "
                    f"{cfg.max_index_columns})"
                )
            name = st.node.get("idxname")
            if cfg.index_name_pattern and name and not re.search(cfg.index_name_pattern, name):
                yield Hit(f"index name {name} does not match {cfg.index_name_pattern!r}")
            elif cfg.index_name_pattern and not name:
                yield Hit(
                    "index has no explicit name (the generated name ignores the naming pattern)"
                )
            return
        if not cfg.constraint_name_pattern:
            return
        for raw in st.node.get("cmds", []):
            _, cmd = unwrap(raw)
            dk, d = unwrap(cmd.get("def"))
            if cmd.get("subtype") == "AT_AddConstraint" and dk == "Constraint":
                name = d.get("conname") or ""
                if not re.search(cfg.constraint_name_pattern, name):
                    yield Hit(
                        f"constraint name {name or '(generated)'} does not match "
                        f"{cfg.constraint_name_pattern!r}"
                    )
