"""backward-incompatible: the previous application version (still running during a rolling
deploy, or after a rollback) breaks against the new schema."""

from __future__ import annotations

from collections.abc import Iterator

from ..catalog import ABSENT, EXT, FUNC, NEW, REL, TYPE
from ..context import Context
from ..parser import Statement
from ..tree import (
    columndefs_of,
    contypes,
    object_names,
    rel_name,
    strings,
    type_info,
    unwrap,
    walk,
)
from .base import Hit, Rule, rule
from .data_loss import _NAMESPACE, OBJECT_WORDS
from .util import alter_cmds, table_cmds


class Compat(Rule):
    category = "backward-incompatible"
    severity = "warning"
    lock = "ACCESS EXCLUSIVE (fast)"


@rule
class RenameColumn(Compat):
    id, name = "BC01", "rename-column"
    summary = "Renaming a column breaks every query of the running application that names it."
    safe_alternative = (
        "Add the new column + sync trigger + backfill, switch the application, drop the old one "
        "later (or keep a generated alias column)."
    )
    statement_kinds = frozenset({"RenameStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.node.get("renameType") == "OBJECT_COLUMN":
            table = rel_name(st.node.get("relation"))
            if not ctx.is_new(table):
                yield Hit(
                    f"RENAME COLUMN {table}.{st.node.get('subname')} TO {st.node.get('newname')}",
                    table=table,
                )


_TABLE_LIKE = {"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE"}


@rule
class RenameTable(Compat):
    id, name = "BC02", "rename-table"
    summary = (
        "Renaming a table or view breaks every query of the running application that names it."
    )
    safe_alternative = (
        "Rename and CREATE VIEW old_name AS SELECT * FROM new_name; or new table + dual write."
    )
    statement_kinds = frozenset({"RenameStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.node.get("renameType") in _TABLE_LIKE:
            table = rel_name(st.node.get("relation"))
            if not ctx.is_new(table):
                yield Hit(f"RENAME {table} TO {st.node.get('newname')}", table=table)


@rule
class RenameOther(Compat):
    id, name = "BC03", "rename-other-object"
    lock = "varies (fast)"
    summary = (
        "Renaming a schema, type, index, constraint, sequence, function or enum value breaks "
        "users of the old name."
    )
    safe_alternative = (
        "Add the new object, migrate users, drop the old one; for enums add a value and backfill."
    )
    docs = "RENAME VALUE needs PostgreSQL 10+."
    statement_kinds = frozenset({"RenameStmt", "AlterEnumStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "AlterEnumStmt":
            if st.node.get("oldVal"):
                name = ".".join(strings(st.node.get("typeName")))
                yield Hit(
                    f"ALTER TYPE {name} RENAME VALUE '{st.node['oldVal']}' TO "
                    f"'{st.node.get('newVal')}'"
                )
            return
        rtype = st.node.get("renameType", "")
        if rtype in _TABLE_LIKE or rtype == "OBJECT_COLUMN":
            return
        table = rel_name(st.node.get("relation"))
        if table and ctx.is_new(table):
            return
        obj_name = ".".join(object_names({"objects": [st.node.get("object")]}))
        ns = _NAMESPACE.get(rtype)
        if ns is not None and obj_name and ctx.is_new_object(obj_name, ns):
            return
        if rtype == "OBJECT_SCHEMA" and ctx.model.schema_status(st.node.get("subname", "")) in (
                NEW, ABSENT):
            return
        old = st.node.get("subname") or table or obj_name
        word = OBJECT_WORDS.get(rtype, rtype.replace("OBJECT_", "").lower()).upper()
        on = f" on {table}" if table and st.node.get("subname") else ""
        yield Hit(f"RENAME {word} {old}{on} TO {st.node.get('newname')}")


@rule
class DropNotNull(Compat):
    id, name = "BC04", "drop-not-null"
    summary = "DROP NOT NULL lets NULLs in that the running application may not handle."
    safe_alternative = "Only after every reader tolerates NULL."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if cmd.subtype == "AT_DropNotNull" and not ctx.is_new(cmd.table):
                yield Hit(f"DROP NOT NULL on {cmd.table}.{cmd.name}", table=cmd.table)


@rule
class ChangeDefault(Compat):
    id, name = "BC05", "change-column-default"
    summary = "SET/DROP DEFAULT changes what inserts of the running application store."
    safe_alternative = "First deploy an application that writes explicit values."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if cmd.subtype == "AT_ColumnDefault" and not ctx.is_new(cmd.table):
                verb = "SET DEFAULT" if cmd.body.get("def") else "DROP DEFAULT"
                yield Hit(f"{verb} on {cmd.table}.{cmd.name}", table=cmd.table)


_NON_TABLE = {
    "OBJECT_VIEW",
    "OBJECT_MATVIEW",
    "OBJECT_FUNCTION",
    "OBJECT_PROCEDURE",
    "OBJECT_ROUTINE",
    "OBJECT_TYPE",
    "OBJECT_DOMAIN",
    "OBJECT_EXTENSION",
    "OBJECT_TRIGGER",
    "OBJECT_POLICY",
    "OBJECT_RULE",
    "OBJECT_INDEX",
    "OBJECT_AGGREGATE",
}


@rule
class DropNonTable(Compat):
    id, name = "BC06", "drop-non-table-object"
    lock = "ACCESS EXCLUSIVE on the owning table"
    summary = (
        "Dropping a view, function, type, trigger, policy, index ... breaks code that uses it."
    )
    safe_alternative = (
        "Deprecate, verify there are no users (pg_stat_user_functions, pg_depend), drop later."
    )
    statement_kinds = frozenset({"DropStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        rtype = st.node.get("removeType", "")
        if rtype not in _NON_TABLE:
            return
        ns = _NAMESPACE.get(rtype)
        names = []
        for n in object_names(st.node):
            if ns is not None and ctx.is_new_object(n, ns):
                continue
            if ns is None and "." in n and ctx.is_new(n.rpartition(".")[0]):
                continue  # a trigger/policy/rule on a table this run created
            names.append(n)
        if names:
            word = OBJECT_WORDS.get(rtype, rtype.replace("OBJECT_", "").lower()).upper()
            yield Hit(f"DROP {word} {', '.join(names)}")


@rule
class DropConstraint(Compat):
    id, name = "BC07", "drop-constraint"
    summary = (
        "Dropping a constraint removes a guarantee code may rely on (FK cascades, ON CONFLICT "
        "targets)."
    )
    safe_alternative = "Make sure no code relies on the guarantee first."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if cmd.subtype == "AT_DropConstraint" and not ctx.is_new(cmd.table):
                yield Hit(f"DROP CONSTRAINT {cmd.name} on {cmd.table}", table=cmd.table)


@rule
class SetSchema(Compat):
    id, name = "BC08", "set-schema"
    summary = "SET SCHEMA moves an object away from the name the application uses."
    safe_alternative = "Create in the new schema and leave a view/synonym in the old one."
    statement_kinds = frozenset({"AlterObjectSchemaStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        table = rel_name(st.node.get("relation"))
        if table and ctx.is_new(table):
            return
        otype = st.node.get("objectType", "")
        what = table or ".".join(object_names({"objects": [st.node.get("object")]}))
        ns = _NAMESPACE.get(otype)
        if not table and ns is not None and ctx.is_new_object(what, ns):
            return
        word = OBJECT_WORDS.get(otype, otype.replace("OBJECT_", "").lower()).upper()
        yield Hit(f"ALTER {word} {what} SET SCHEMA {st.node.get('newschema')}")


@rule
class IdentitySequence(Compat):
    id, name = "BC09", "identity-sequence-change"
    summary = (
        "Changing identity/sequence settings or values can make writers collide or go backwards."
    )
    safe_alternative = "Coordinate with writers; never move a sequence backwards."
    statement_kinds = frozenset({"AlterTableStmt", "AlterSeqStmt", "SelectStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "AlterSeqStmt":
            seq = rel_name(st.node.get("sequence"))
            options = {unwrap(o)[1].get("defname") for o in st.node.get("options", []) or []}
            if options <= {"owned_by"}:
                return  # OWNED BY only ties the sequence's life to a column
            if not ctx.is_new_object(seq):
                yield Hit(f"ALTER SEQUENCE {seq} changes the values writers get")
        elif st.kind == "SelectStmt":
            for name, body in walk(st.node):
                if name == "FuncCall" and strings(body.get("funcname"))[-1:] == ["setval"]:
                    yield Hit("setval() moves a sequence")
                    return
        else:
            for cmd in table_cmds(st):
                if cmd.subtype in (
                    "AT_AddIdentity",
                    "AT_SetIdentity",
                    "AT_DropIdentity",
                ) and not ctx.is_new(cmd.table):
                    what = {"AT_AddIdentity": "ADD GENERATED .. AS IDENTITY",
                            "AT_SetIdentity": "SET identity options",
                            "AT_DropIdentity": "DROP IDENTITY"}[cmd.subtype]
                    yield Hit(f"{what} on {cmd.table}.{cmd.name}", table=cmd.table)


@rule
class GeneratedExpression(Compat):
    id, name = "BC10", "generated-expression-change"
    lock = "ACCESS EXCLUSIVE (SET EXPRESSION rewrites stored columns)"
    summary = "DROP EXPRESSION / SET EXPRESSION changes what a generated column holds."
    safe_alternative = "Add a new column instead."
    docs = "DROP EXPRESSION PG13+, SET EXPRESSION PG17+."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if cmd.subtype not in ("AT_DropExpression", "AT_SetExpression") or ctx.is_new(
                cmd.table
            ):
                continue
            need = 13 if cmd.subtype == "AT_DropExpression" else 17
            note = "" if ctx.pg(need) else f" (needs PostgreSQL {need}+, {ctx.version_text})"
            what = "DROP EXPRESSION" if cmd.subtype == "AT_DropExpression" else "SET EXPRESSION"
            yield Hit(f"{what} on {cmd.table}.{cmd.name}{note}", table=cmd.table)


_SWITCH_WORDS = {
    "AT_DisableTrig": "DISABLE TRIGGER {name}",
    "AT_DisableTrigAll": "DISABLE TRIGGER ALL",
    "AT_DisableTrigUser": "DISABLE TRIGGER USER",
    "AT_DisableRule": "DISABLE RULE {name}",
    "AT_EnableReplicaTrig": "ENABLE REPLICA TRIGGER {name}",
    "AT_EnableAlwaysTrig": "ENABLE ALWAYS TRIGGER {name}",
    "AT_EnableReplicaRule": "ENABLE REPLICA RULE {name}",
    "AT_EnableAlwaysRule": "ENABLE ALWAYS RULE {name}",
}
_TRIGGER_SWITCHES = set(_SWITCH_WORDS)


@rule
class DisableTrigger(Compat):
    id, name = "BC11", "disable-trigger-or-rule"
    lock = "SHARE ROW EXCLUSIVE"
    summary = (
        "Disabling triggers/rules switches off behaviour the application relies on (ALL: foreign "
        "keys too)."
    )
    safe_alternative = "Avoid in migrations; never DISABLE TRIGGER ALL on tables with foreign keys."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if cmd.subtype in _TRIGGER_SWITCHES and not ctx.is_new(cmd.table):
                extra = (
                    ": foreign keys are no longer enforced"
                    if cmd.subtype == "AT_DisableTrigAll"
                    else ""
                )
                what = _SWITCH_WORDS[cmd.subtype].format(name=cmd.name or "").strip()
                yield Hit(f"{what} on {cmd.table}{extra}", table=cmd.table)


@rule
class ReplaceViewFunction(Compat):
    id, name = "BC12", "replace-view-or-function"
    lock = "ACCESS EXCLUSIVE on the view"
    summary = "CREATE OR REPLACE changes a view/function/trigger the running application calls."
    safe_alternative = "Version the object name (v2) and switch callers."
    statement_kinds = frozenset({"ViewStmt", "CreateFunctionStmt", "CreateTrigStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if not st.node.get("replace"):
            return
        if st.kind == "ViewStmt":
            name = rel_name(st.node.get("view"))
        elif st.kind == "CreateFunctionStmt":
            name = ".".join(strings(st.node.get("funcname")))
        else:
            name = st.node.get("trigname", "")
        ns = {"ViewStmt": REL, "CreateFunctionStmt": FUNC}.get(st.kind)
        if ns is not None and ctx.ref(name, ns).status in (NEW, ABSENT):
            return  # nothing running uses what this run created (or what does not exist yet)
        if st.kind == "CreateTrigStmt" and ctx.is_new(rel_name(st.node.get("relation"))):
            return
        word = {"ViewStmt": "VIEW", "CreateFunctionStmt": "FUNCTION",
                "CreateTrigStmt": "TRIGGER"}[st.kind]
        if st.kind == "CreateFunctionStmt" and st.node.get("is_procedure"):
            word = "PROCEDURE"
        yield Hit(f"CREATE OR REPLACE {word} {name}")


_RLS = {
    "AT_EnableRowSecurity": "ENABLE ROW LEVEL SECURITY",
    "AT_DisableRowSecurity": "DISABLE ROW LEVEL SECURITY",
    "AT_ForceRowSecurity": "FORCE ROW LEVEL SECURITY",
    "AT_NoForceRowSecurity": "NO FORCE ROW LEVEL SECURITY",
}


@rule
class PrivilegeSecurity(Compat):
    id, name = "BC13", "privilege-and-security-change"
    lock = "varies"
    summary = (
        "REVOKE, policies, row-level security, role/database/system settings change what the app "
        "may do."
    )
    safe_alternative = "Verify the old application version still works with its real database role."
    statement_kinds = frozenset(
        {
            "GrantStmt",
            "CreatePolicyStmt",
            "AlterPolicyStmt",
            "DropStmt",
            "AlterTableStmt",
            "AlterRoleStmt",
            "AlterRoleSetStmt",
            "AlterDatabaseStmt",
            "AlterDatabaseSetStmt",
            "AlterSystemStmt",
            "AlterFunctionStmt",
        }
    )

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        k, n = st.kind, st.node
        if k == "GrantStmt":
            if not n.get("is_grant"):
                yield Hit("REVOKE removes privileges the running application may use")
        elif k in ("CreatePolicyStmt", "AlterPolicyStmt"):
            table = rel_name(n.get("table"))
            if not ctx.is_new(table):
                yield Hit(
                    f"{k[:-4].replace('Policy', ' POLICY').upper()} {n.get('policy_name')} on "
                    f"{table}",
                    table=table,
                )
        elif k == "DropStmt":
            if n.get("removeType") == "OBJECT_POLICY":
                yield Hit(f"DROP POLICY {', '.join(object_names(n))}")
        elif k == "AlterTableStmt":
            for cmd in alter_cmds(st):
                if ctx.is_new(cmd.table):
                    continue
                if cmd.subtype in _RLS:
                    yield Hit(f"{_RLS[cmd.subtype]} on {cmd.table}", table=cmd.table)
                elif cmd.subtype in ("AT_SetRelOptions", "AT_ResetRelOptions") and (
                        cmd.objtype == "OBJECT_VIEW"):
                    verb = "SET" if cmd.subtype == "AT_SetRelOptions" else "RESET"
                    yield Hit(f"ALTER VIEW {cmd.table} {verb} (...) changes view security "
                              "options")
        else:
            label = {
                "AlterRoleStmt": "ALTER ROLE",
                "AlterRoleSetStmt": "ALTER ROLE .. SET",
                "AlterDatabaseStmt": "ALTER DATABASE",
                "AlterDatabaseSetStmt": "ALTER DATABASE .. SET",
                "AlterSystemStmt": "ALTER SYSTEM",
                "AlterFunctionStmt": "ALTER FUNCTION/PROCEDURE options",
            }[k]
            yield Hit(f"{label} changes security or runtime settings")


@rule
class ReplicaIdentityPublication(Compat):
    id, name = "BC14", "replica-identity-or-publication"
    summary = "REPLICA IDENTITY / publication changes break logical replication and CDC consumers."
    safe_alternative = "Coordinate with CDC / logical replication consumers."
    statement_kinds = frozenset({"AlterTableStmt", "DropStmt", "AlterPublicationStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "AlterPublicationStmt":
            action = st.node.get("action", "")
            if action == "AP_AddObjects" or (not action and not st.node.get("options")):
                return  # adding tables to a publication breaks no consumer
            what = {"AP_DropObjects": "DROP", "AP_SetObjects": "SET"}.get(action, "SET (...)")
            yield Hit(f"ALTER PUBLICATION {st.node.get('pubname')} {what}: consumers stop "
                      "receiving changes they had")
        elif st.kind == "DropStmt":
            if st.node.get("removeType") == "OBJECT_PUBLICATION":
                yield Hit(f"DROP PUBLICATION {', '.join(object_names(st.node))}")
        else:
            for cmd in table_cmds(st):
                if cmd.subtype == "AT_ReplicaIdentity" and not ctx.is_new(cmd.table):
                    yield Hit(f"REPLICA IDENTITY change on {cmd.table}", table=cmd.table)


@rule
class DetachInheritance(Compat):
    id, name = "BC15", "detach-inheritance-or-partition"
    lock = "ACCESS EXCLUSIVE (see LK11)"
    summary = "NO INHERIT / DETACH PARTITION make rows vanish from queries on the parent."
    safe_alternative = "Make sure readers query the child directly first."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if cmd.subtype == "AT_DropInherit" and not ctx.is_new(cmd.table):
                yield Hit(
                    f"{cmd.table} NO INHERIT {rel_name(cmd.definition)}: its rows vanish from "
                    f"the parent",
                    table=cmd.table,
                )
            elif cmd.subtype == "AT_DetachPartition" and not ctx.is_new(cmd.table):
                part = rel_name(cmd.definition.get("name"))
                yield Hit(
                    f"DETACH PARTITION {part}: its rows vanish from {cmd.table}", table=cmd.table
                )


_CONSTRAINT_WORDS = {
    "CONSTR_CHECK": "CHECK",
    "CONSTR_FOREIGN": "FOREIGN KEY",
    "CONSTR_UNIQUE": "UNIQUE",
    "CONSTR_NOTNULL": "NOT NULL",
    "CONSTR_EXCLUSION": "EXCLUDE",
    "CONSTR_PRIMARY": "PRIMARY KEY",
}
_RESTRICTIONS = {
    "CONSTR_CHECK",
    "CONSTR_FOREIGN",
    "CONSTR_UNIQUE",
    "CONSTR_NOTNULL",
    "CONSTR_EXCLUSION",
    "CONSTR_PRIMARY",
}


@rule
class NewWriteRestriction(Compat):
    id, name = "BC16", "new-write-restriction"
    severity = "info"
    lock = "see LK*"
    summary = (
        "A new CHECK/FK/UNIQUE/NOT NULL/EXCLUDE rejects writes the running application may still "
        "make."
    )
    safe_alternative = (
        "Ship an application that satisfies the constraint first; check the rollback target "
        "version."
    )
    statement_kinds = frozenset({"AlterTableStmt", "IndexStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "IndexStmt":
            table = rel_name(st.node.get("relation"))
            if st.node.get("unique") and not ctx.is_new(table):
                yield Hit(f"UNIQUE index on {table} rejects duplicate writes", table=table)
            return
        for cmd in table_cmds(st):
            if ctx.is_new(cmd.table):
                continue
            if cmd.subtype == "AT_AddConstraint" and cmd.definition.get("contype") in _RESTRICTIONS:
                kind = _CONSTRAINT_WORDS[cmd.definition["contype"]]
                yield Hit(f"new {kind} constraint on {cmd.table} restricts writes", table=cmd.table)
            elif (cmd.subtype == "AT_AlterConstraint" and cmd.def_kind == "ATAlterConstraint"
                  and cmd.definition.get("alterDeferrability")
                  and not cmd.definition.get("deferrable")):
                yield Hit(
                    f"ALTER CONSTRAINT {cmd.definition.get('conname')} on {cmd.table} NOT "
                    "DEFERRABLE: writes that relied on checking at COMMIT now fail at once",
                    table=cmd.table,
                )
            elif cmd.subtype == "AT_SetNotNull":
                yield Hit(
                    f"SET NOT NULL on {cmd.table}.{cmd.name} rejects NULL writes", table=cmd.table
                )
            elif cmd.subtype == "AT_AddColumn" and contypes(cmd.definition) & _RESTRICTIONS:
                yield Hit(
                    f"ADD COLUMN with constraints on {cmd.table} restricts writes", table=cmd.table
                )


@rule
class AdditiveShape(Compat):
    id, name = "BC17", "additive-shape-change"
    severity = "info"
    summary = (
        "New columns/enum values/attributes break clients using SELECT * or positional INSERT."
    )
    safe_alternative = "Usually fine; verify old clients don't use positional INSERT or SELECT *."
    statement_kinds = frozenset({"AlterTableStmt", "AlterEnumStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "AlterEnumStmt":
            if ctx.is_new_object(".".join(strings(st.node.get("typeName"))), TYPE):
                return  # an enum this run created: nobody uses it yet
            if not st.node.get("oldVal"):
                yield Hit(
                    f"ADD VALUE '{st.node.get('newVal')}' to enum "
                    f"{'.'.join(strings(st.node.get('typeName')))}"
                )
            return
        for cmd in alter_cmds(st):
            if cmd.subtype != "AT_AddColumn":
                continue
            fresh = (ctx.is_new_object(cmd.table, TYPE) if cmd.objtype == "OBJECT_TYPE"
                     else ctx.is_new(cmd.table))
            if not fresh:
                what = "attribute to type" if cmd.objtype == "OBJECT_TYPE" else "column to"
                yield Hit(f"adds {what} {cmd.table}: {cmd.definition.get('colname')}", table=None)


@rule
class AlterExtension(Compat):
    id, name = "BC18", "alter-extension"
    lock = "varies"
    summary = (
        "ALTER EXTENSION UPDATE / ADD / DROP changes functions and types the application uses."
    )
    safe_alternative = "Test the extension upgrade separately."
    statement_kinds = frozenset({"AlterExtensionStmt", "AlterExtensionContentsStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        name = st.node.get("extname")
        if ctx.is_new_object(name, EXT):
            return
        if st.kind == "AlterExtensionStmt":
            yield Hit(f"ALTER EXTENSION {name} UPDATE changes its functions and types")
        elif st.node.get("action", 1) < 0:  # +1 ADD (harmless bookkeeping), -1 DROP
            word = OBJECT_WORDS.get(st.node.get("objtype", ""), "object")
            yield Hit(f"ALTER EXTENSION {name} DROP {word}: the object is no longer the "
                      "extension's (an extension upgrade will not maintain it)")


@rule
class JsonColumn(Compat):
    id, name = "BC19", "json-column"
    lock = "n/a"
    summary = "json has no equality operator: SELECT DISTINCT, UNION and GROUP BY on it fail."
    safe_alternative = "Use jsonb."
    statement_kinds = frozenset({"CreateStmt", "AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for table, col in columndefs_of(st):
            t = type_info(col.get("typeName"))
            if t and t.name == "json":
                yield Hit(f"column {table}.{col.get('colname')} has type json")
