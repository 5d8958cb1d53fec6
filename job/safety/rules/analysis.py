"""analysis: what the gate itself could not look at. Not in the 73-rule catalogue; these make
blind spots visible instead of silently passing them."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import Context
from ..parser import Statement
from ..tree import rel_name, strings, unwrap
from .base import Hit, Rule, rule


class Analysis(Rule):
    category = "analysis"
    lock = "n/a"


@rule
class CouldNotParse(Analysis):
    id, name = "AN01", "could-not-parse"
    severity = "error"
    blocking = True  # the server would reject it mid-deploy, and nothing in it was checked
    summary = "A statement the PostgreSQL 18 grammar rejects; it was not analysed."
    safe_alternative = "Fix the syntax; approve with a reason only if the target server accepts it."


@rule
class MetaCommand(Analysis):
    id, name = "AN02", "psql-meta-command"
    severity = "error"
    blocking = True
    summary = (
        "A psql backslash command (\\set, \\i, \\connect ...): migrations are sent to the server, "
        "not psql."
    )
    safe_alternative = "Remove it; express the step in SQL."


@rule
class DynamicSql(Analysis):
    id, name = "AN03", "dynamic-sql-not-analysed"
    severity = "warning"
    summary = "DO blocks and function/procedure bodies run SQL the gate cannot see."
    safe_alternative = "Prefer plain SQL statements in migrations; review the body by hand."
    statement_kinds = frozenset({"DoStmt", "CreateFunctionStmt", "CallStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "DoStmt":
            yield Hit("DO block: its dynamic SQL was not analysed")
        elif st.kind == "CallStmt":
            _, call = unwrap({"FuncCall": st.node.get("funccall") or {}})
            yield Hit(
                f"CALL {'.'.join(strings(call.get('funcname')))}(): the procedure body was "
                f"not analysed"
            )
        elif not st.node.get("sql_body"):
            name = ".".join(strings(st.node.get("funcname")))
            lang = "sql"
            for opt in st.node.get("options", []):
                _, d = unwrap(opt)
                if d.get("defname") == "language":
                    lang = unwrap(d.get("arg"))[1].get("sval", lang)
            yield Hit(f"function {name} ({lang}) body is not analysed; it runs only when called")


@rule
class InvalidDirective(Analysis):
    id, name = "AN04", "invalid-approval-directive"
    severity = "error"
    summary = "A `-- migrate-job:` comment that is not a valid approval; it approves nothing."
    safe_alternative = 'Write it as: -- migrate-job: approve DL02 "reason the reviewer can check"'


@rule
class AnalyserError(Analysis):
    id, name = "AN05", "analyser-error"
    severity = "error"
    summary = (
        "A rule failed on this statement (a bug in migrate-job); the statement was only partly "
        "analysed."
    )
    safe_alternative = "Report the bug with the statement; review the statement by hand."


@rule
class RollbackDirective(Analysis):
    id, name = "AN06", "rollback-transaction-directive"
    severity = "warning"
    summary = (
        "A rollback script declares its own `-- transactional:`, which yoyo ignores: a rollback "
        "runs in its up migration's mode."
    )
    safe_alternative = (
        "Declare the mode in the up file; split the migration if up and rollback need different "
        "modes."
    )


@rule
class CatalogWrite(Analysis):
    id, name = "AN07", "system-catalog-write"
    severity = "warning"
    summary = (
        "INSERT/UPDATE/DELETE on a system catalog (pg_catalog): bypasses every check "
        "PostgreSQL makes, and is not a data migration of the application's tables."
    )
    safe_alternative = "Use the DDL that changes the same thing (ALTER INDEX, ALTER TABLE ...)."
    statement_kinds = frozenset({"UpdateStmt", "DeleteStmt", "InsertStmt", "MergeStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        table = rel_name(st.node.get("relation"))
        if table and ctx.ref(table).status == "system":
            verb = st.kind[:-4].upper()
            yield Hit(f"{verb} on system catalog {table}: a direct catalog write (not checked "
                      "as a data migration)")
