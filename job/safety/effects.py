"""What each statement does to the run-aware model (catalog.py), read from its parse tree.

Only effects the rules depend on are modelled: which relations, types, functions and schemas
exist and who made them, the columns of tables (type, NOT NULL, generated, added by the run or
not), CHECK constraints that prove columns non-null, and `search_path`. Anything not modelled
(dynamic SQL in DO blocks, extensions' objects) simply stays as the database or the files had it.
"""

from __future__ import annotations

from .catalog import EXT, FUNC, REL, TYPE, Catalog, Check, Column
from .parser import Statement
from .tree import (
    Node,
    constraints,
    object_names,
    rel_name,
    strings,
    type_info,
    unwrap,
    walk,
)

# What a DROP of each object type removes from the model (and which namespace it lives in).
DROP_NAMESPACES = {
    "OBJECT_TABLE": REL,
    "OBJECT_FOREIGN_TABLE": REL,
    "OBJECT_VIEW": REL,
    "OBJECT_MATVIEW": REL,
    "OBJECT_SEQUENCE": REL,
    "OBJECT_INDEX": REL,
    "OBJECT_TYPE": TYPE,
    "OBJECT_DOMAIN": TYPE,
    "OBJECT_FUNCTION": FUNC,
    "OBJECT_PROCEDURE": FUNC,
    "OBJECT_ROUTINE": FUNC,
    "OBJECT_AGGREGATE": FUNC,
    "OBJECT_EXTENSION": EXT,
}
_RENAME_REL = {
    "OBJECT_TABLE",
    "OBJECT_VIEW",
    "OBJECT_MATVIEW",
    "OBJECT_FOREIGN_TABLE",
    "OBJECT_SEQUENCE",
    "OBJECT_INDEX",
}


def column_of(column_def: Node, origin: str) -> Column:
    generated = ""
    notnull = False
    for con in constraints(column_def):
        ct = con.get("contype")
        if ct == "CONSTR_GENERATED":
            generated = con.get("generated_kind", "s")
        elif ct in ("CONSTR_NOTNULL", "CONSTR_PRIMARY", "CONSTR_IDENTITY"):
            notnull = True
    t = type_info(column_def.get("typeName"))
    if t is not None and t.name in ("serial", "bigserial", "smallserial"):
        notnull = True
    return Column(t, generated, notnull, origin)


def not_null_columns(expr: Node | None) -> list[str]:
    """Columns that `CHECK (a IS NOT NULL [AND b IS NOT NULL])` proves non-null."""
    kind, body = unwrap(expr)
    if kind == "NullTest" and body.get("nulltesttype") == "IS_NOT_NULL":
        akind, arg = unwrap(body.get("arg"))
        if akind == "ColumnRef":
            fields = strings(arg.get("fields"))
            return fields[-1:] if fields else []
    if kind == "BoolExpr" and body.get("boolop") == "AND_EXPR":
        out: list[str] = []
        for a in body.get("args", []):
            out.extend(not_null_columns(a))
        return out
    return []


def check_of(con: Node, validated: bool) -> Check:
    expr = con.get("raw_expr")
    cols = sorted({strings(b.get("fields"))[-1] for n, b in walk(expr)
                   if n == "ColumnRef" and strings(b.get("fields"))})
    return Check(validated, tuple(not_null_columns(expr)), tuple(cols))


def _table_elements(model: Catalog, table: str, elts: list[Node]) -> tuple[
        dict[str, Column], dict[str, Check], dict[str, str]]:
    cols: dict[str, Column] = {}
    checks: dict[str, Check] = {}
    others: dict[str, str] = {}
    for n, (name, body) in enumerate(unwrap(e) for e in elts or []):
        if name == "ColumnDef" and body.get("colname"):
            cols[body["colname"]] = column_of(body, "new")
            for con in constraints(body):
                if con.get("contype") == "CONSTR_CHECK":
                    name_ = con.get("conname") or f"{_base(table)}_{body['colname']}_check"
                    checks[name_] = check_of(con, True)
                    if not checks[name_].columns:
                        checks[name_] = Check(True, (), (body["colname"],))
        elif name == "Constraint":
            _constraint(cols, checks, others, body, table, validated=True, index=n)
    return cols, checks, others


def _constraint(cols: dict[str, Column], checks: dict[str, Check], others: dict[str, str],
                con: Node, table: str, validated: bool, index: int = 0) -> None:
    contype = con.get("contype", "")
    name = con.get("conname") or f"{_base(table)}_{index}_{contype[7:].lower()}"
    if contype == "CONSTR_CHECK":
        check = check_of(con, validated)
        if not con.get("conname") and check.columns:  # PostgreSQL's own naming
            name = f"{_base(table)}_{check.columns[0]}_check"
        checks[name] = check
    else:
        others[name] = contype
    if contype in ("CONSTR_PRIMARY", "CONSTR_NOTNULL") and validated:
        for key in strings(con.get("keys")):
            c = cols.get(key)
            if c is not None:
                c.notnull = True


def _base(name: str) -> str:
    return name.rpartition(".")[2]


def apply(model: Catalog, st: Statement) -> None:
    """Update the model with the effects of one statement (after the rules have seen it)."""
    kind, n = st.kind, st.node
    handler = _HANDLERS.get(kind)
    if handler is not None:
        handler(model, n)


def _create(model: Catalog, n: Node) -> None:
    rv = n.get("relation") or {}
    table = rel_name(rv)
    if not table:
        return
    kind = "partitioned" if n.get("partspec") else "table"
    cols, checks, others = _table_elements(model, table, n.get("tableElts", []))
    obj = model.create(table, kind, temp=rv.get("relpersistence") == "t",
                       if_not_exists=bool(n.get("if_not_exists")), columns=cols, checks=checks)
    if obj is not None and obj.origin == "new":
        obj.constraints.update(others)


def _create_foreign(model: Catalog, n: Node) -> None:
    base = n.get("base") or {}
    table = rel_name(base.get("relation"))
    cols, checks, _ = _table_elements(model, table or "?", base.get("tableElts", []))
    model.create(table, "foreign", if_not_exists=bool(base.get("if_not_exists")), columns=cols,
                 checks=checks)


def _create_table_as(model: Catalog, n: Node) -> None:
    into = n.get("into") or {}
    rv = into.get("rel") or {}
    kind = "matview" if n.get("objtype") == "OBJECT_MATVIEW" else "table"
    model.create(rel_name(rv), kind, temp=rv.get("relpersistence") == "t",
                 if_not_exists=bool(n.get("if_not_exists")), columns=None)


def _select(model: Catalog, n: Node) -> None:
    into = n.get("intoClause")
    if into:
        rv = into.get("rel") or {}
        model.create(rel_name(rv), "table", temp=rv.get("relpersistence") == "t", columns=None)
    for name, body in walk(n.get("targetList")):
        if name == "FuncCall" and strings(body.get("funcname"))[-1:] == ["set_config"]:
            args = body.get("args") or []
            if len(args) >= 2:
                k0, a0 = unwrap(args[0])
                k1, a1 = unwrap(args[1])
                if (k0 == "A_Const" and (a0.get("sval") or {}).get("sval") == "search_path"
                        and k1 == "A_Const" and "sval" in a1):
                    model.set_search_path(parse_search_path(a1["sval"].get("sval", "")))


def parse_search_path(text: str) -> list[str]:
    out = []
    for part in text.split(","):
        p = part.strip()
        if p.startswith('"') and p.endswith('"') and len(p) >= 2:
            out.append(p[1:-1].replace('""', '"'))
        elif p:
            out.append(p.lower())
    return out


def _set(model: Catalog, n: Node) -> None:
    if n.get("name") != "search_path":
        return
    if n.get("kind") == "VAR_SET_VALUE":
        path = []
        for a in n.get("args", []):
            k, body = unwrap(a)
            if k == "A_Const":
                path.append((body.get("sval") or {}).get("sval", ""))
        model.set_search_path(path)
    elif n.get("kind") in ("VAR_SET_DEFAULT", "VAR_RESET"):
        model.set_search_path(["public"])


def _view(model: Catalog, n: Node) -> None:
    rv = n.get("view") or {}
    name = rel_name(rv)
    if n.get("replace") and model.resolve(name).obj is not None:
        return
    model.create(name, "view", temp=rv.get("relpersistence") == "t", columns=None)


def _sequence(model: Catalog, n: Node) -> None:
    rv = n.get("sequence") or {}
    model.create(rel_name(rv), "sequence", temp=rv.get("relpersistence") == "t",
                 if_not_exists=bool(n.get("if_not_exists")), columns=None)


def _index(model: Catalog, n: Node) -> None:
    name = n.get("idxname")
    table = rel_name(n.get("relation"))
    if not name or not table:
        return
    ref = model.resolve(table)
    schema = ref.name.rpartition(".")[0] if "." in ref.name else None
    model.create(f"{schema}.{name}" if schema else name, "index",
                 if_not_exists=bool(n.get("if_not_exists")), table=ref.name, columns=None)


def _type_name(model: Catalog, names: list[str], if_not_exists: bool = False) -> None:
    if names:
        model.create(".".join(names[-2:]), "type", ns=TYPE, if_not_exists=if_not_exists,
                     columns=None)


def _enum(model: Catalog, n: Node) -> None:
    _type_name(model, strings(n.get("typeName")))


def _range(model: Catalog, n: Node) -> None:
    _type_name(model, strings(n.get("typeName")))


def _composite(model: Catalog, n: Node) -> None:
    name = rel_name(n.get("typevar"))
    if name:
        _type_name(model, name.split("."))


def _domain(model: Catalog, n: Node) -> None:
    _type_name(model, strings(n.get("domainname")))


def _function(model: Catalog, n: Node) -> None:
    names = strings(n.get("funcname"))
    if not names:
        return
    name = ".".join(names[-2:])
    if n.get("replace") and model.resolve(name, FUNC).obj is not None:
        return
    model.create(name, "function", ns=FUNC, columns=None)


def _schema(model: Catalog, n: Node) -> None:
    name = n.get("schemaname")
    if not name:
        return
    model.create_schema(name, bool(n.get("if_not_exists")))
    saved = list(model.search_path)
    model.search_path = [name]  # CREATE SCHEMA s CREATE TABLE t: t goes into s
    try:
        for elt in n.get("schemaElts", []) or []:
            k, body = unwrap(elt)
            handler = _HANDLERS.get(k)
            if handler is not None:
                handler(model, body)
    finally:
        model.search_path = saved


def _extension(model: Catalog, n: Node) -> None:
    model.create(n.get("extname"), "extension", ns=EXT,
                 if_not_exists=bool(n.get("if_not_exists")), columns=None)


def drop_names(n: Node) -> list[str]:
    """Object names of a DROP, dotted as the catalog keys them (functions without arguments)."""
    if n.get("removeType") in ("OBJECT_TRIGGER", "OBJECT_POLICY", "OBJECT_RULE"):
        return []
    return object_names(n)


def _drop(model: Catalog, n: Node) -> None:
    rtype = n.get("removeType", "")
    if rtype == "OBJECT_SCHEMA":
        for name in object_names(n):
            model.drop_schema(name)
        return
    ns = DROP_NAMESPACES.get(rtype)
    if ns is None:
        return
    for name in drop_names(n):
        model.drop(name, ns)


def _rename(model: Catalog, n: Node) -> None:
    rtype = n.get("renameType", "")
    new = n.get("newname", "")
    if rtype in _RENAME_REL:
        model.rename(rel_name(n.get("relation")), new)
    elif rtype == "OBJECT_COLUMN":
        obj = model.alter(rel_name(n.get("relation")))
        if obj is not None and obj.columns is not None:
            col = obj.columns.pop(n.get("subname", ""), None)
            if col is not None:
                obj.columns[new] = col
    elif rtype == "OBJECT_TABCONSTRAINT":
        obj = model.alter(rel_name(n.get("relation")))
        old = n.get("subname", "")
        if obj is not None and obj.checks is not None and old in obj.checks:
            obj.checks[new] = obj.checks.pop(old)
        elif obj is not None and old in obj.constraints:
            obj.constraints[new] = obj.constraints.pop(old)
    elif rtype == "OBJECT_SCHEMA":
        model.rename_schema(n.get("subname", ""), new)
    elif rtype in ("OBJECT_TYPE", "OBJECT_DOMAIN"):
        names = object_names({"objects": [n.get("object")]})
        if names:
            model.rename(names[0], new, TYPE)
    elif rtype in ("OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE"):
        names = object_names({"objects": [n.get("object")]})
        if names:
            model.rename(names[0], new, FUNC)


def _set_schema(model: Catalog, n: Node) -> None:
    new = n.get("newschema", "")
    otype = n.get("objectType", "")
    if n.get("relation"):
        model.set_schema(rel_name(n.get("relation")), new)
        return
    names = object_names({"objects": [n.get("object")]})
    if not names:
        return
    if otype in ("OBJECT_TYPE", "OBJECT_DOMAIN"):
        model.set_schema(names[0], new, TYPE)
    elif otype in ("OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE"):
        model.set_schema(names[0], new, FUNC)


def _alter_table(model: Catalog, n: Node) -> None:
    if n.get("objtype") not in ("OBJECT_TABLE", "OBJECT_FOREIGN_TABLE", "OBJECT_MATVIEW"):
        return
    table = rel_name(n.get("relation"))
    if not table:
        return
    ref = model.resolve(table)
    if ref.obj is None and ref.status != "unknown":
        return  # ALTER TABLE IF EXISTS of nothing, or a table made by dynamic SQL
    obj = model.alter(table)
    if obj is None:
        return
    if obj.columns is None:
        obj.columns = {}
    if obj.checks is None:
        obj.checks = {}
    for i, cmd in enumerate(n.get("cmds", [])):
        _, c = unwrap(cmd)
        sub = c.get("subtype", "")
        dname, d = unwrap(c.get("def"))
        name = c.get("name", "")
        if sub == "AT_AddColumn" and dname == "ColumnDef":
            colname = d.get("colname", "")
            if c.get("missing_ok") and colname in obj.columns:
                continue
            obj.columns[colname] = column_of(d, model.new_origin)
            if model.new_origin != "new":
                obj.columns[colname].db_name = colname
            for con in constraints(d):
                if con.get("contype") == "CONSTR_CHECK":
                    obj.checks[con.get("conname") or f"{_base(table)}_{colname}_check"] = Check(
                        True, tuple(not_null_columns(con.get("raw_expr"))), (colname,))
        elif sub == "AT_DropColumn":
            obj.columns.pop(name, None)
            for cname in [k for k, ch in obj.checks.items() if name in ch.columns]:
                obj.checks.pop(cname)
        elif sub == "AT_AlterColumnType" and dname == "ColumnDef":
            col = obj.columns.get(name)
            if col is not None:
                col.type = type_info(d.get("typeName"))
        elif sub == "AT_SetNotNull":
            col = obj.columns.get(name)
            if col is not None:
                col.notnull = True
        elif sub == "AT_DropNotNull":
            col = obj.columns.get(name)
            if col is not None:
                col.notnull = False
        elif sub == "AT_AddConstraint" and dname == "Constraint":
            _constraint(obj.columns, obj.checks, obj.constraints, d, table,
                        validated=not d.get("skip_validation"), index=i)
        elif sub == "AT_ValidateConstraint":
            ch = obj.checks.get(name)
            if ch is not None:
                ch.validated = True
        elif sub == "AT_DropConstraint":
            obj.checks.pop(name, None)
            obj.constraints.pop(name, None)


_HANDLERS = {
    "CreateStmt": _create,
    "CreateForeignTableStmt": _create_foreign,
    "CreateTableAsStmt": _create_table_as,
    "SelectStmt": _select,
    "VariableSetStmt": _set,
    "ViewStmt": _view,
    "CreateSeqStmt": _sequence,
    "IndexStmt": _index,
    "CreateEnumStmt": _enum,
    "CreateRangeStmt": _range,
    "CompositeTypeStmt": _composite,
    "CreateDomainStmt": _domain,
    "CreateFunctionStmt": _function,
    "CreateSchemaStmt": _schema,
    "CreateExtensionStmt": _extension,
    "DropStmt": _drop,
    "RenameStmt": _rename,
    "AlterObjectSchemaStmt": _set_schema,
    "AlterTableStmt": _alter_table,
}
