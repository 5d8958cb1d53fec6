"""Verify scripts (``NNNN_name.verify.sql``) run inside the migration's transaction and commit
with it: a write there is a change nobody reviewed as a migration. Only reads belong in them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..context import Context
from ..parser import Statement
from ..tree import func_names, walk
from .base import Hit, Rule, rule

VERIFY_SUFFIX = ".verify.sql"

# Statements that cannot change anything (DO blocks are the usual `RAISE EXCEPTION` assertion;
# their PL/pgSQL is not analysed).
_READ_ONLY = frozenset({"SelectStmt", "DoStmt", "VariableShowStmt", "ExplainStmt",
                        "VariableSetStmt"})
_WRITES = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
# Functions that write although called from a SELECT.
_WRITING_FUNCTIONS = frozenset({"nextval", "setval", "pg_advisory_lock",
                                "pg_advisory_xact_lock", "lo_unlink", "lo_import",
                                "pg_terminate_backend", "pg_cancel_backend"})


def _words(kind: str) -> str:
    """libpg_query node name -> SQL words: AlterTableStmt -> ALTER TABLE."""
    return re.sub(r"([a-z])([A-Z])", r"\1 \2", kind.removesuffix("Stmt")).upper()


def _has_key(obj: Any, key: str) -> bool:
    if isinstance(obj, dict):
        return key in obj or any(_has_key(v, key) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_key(v, key) for v in obj)
    return False


def write_in(st: Statement) -> str | None:
    """Why ``st`` is not read-only, or None when it is."""
    if st.kind not in _READ_ONLY:
        return f"{_words(st.kind)} statement"
    if st.kind == "VariableSetStmt":
        # SET LOCAL ends with the transaction; a plain SET would outlive it on the migration
        # connection and change every later migration of the run.
        return None if st.node.get("is_local") else "SET without LOCAL"
    if st.kind == "ExplainStmt":
        analyze = any(body.get("defname") == "analyze" for name, body in walk(st.node)
                      if name == "DefElem")
        inner = next((name for name, _ in walk(st.node.get("query")) if name in _WRITES), None)
        return f"EXPLAIN ANALYZE runs its {_words(inner)}" if analyze and inner else None
    written = next((name for name, _ in walk(st.node) if name in _WRITES), None)
    if written:
        return f"{_words(written)} in a WITH query"
    if _has_key(st.node, "intoClause"):
        return "SELECT INTO (creates a table)"
    if _has_key(st.node, "lockingClause"):
        return "row locks (FOR UPDATE/SHARE)"
    called = sorted(set(func_names(st.node)) & _WRITING_FUNCTIONS)
    if called:
        return f"{', '.join(called)}() changes state"
    return None


@rule
class WriteInVerifyScript(Rule):
    id, name = "VF01", "write-in-verify-script"
    category = "analysis"
    severity = "error"
    lock = "n/a"
    blocking = True  # it would commit with the migration, unreviewed
    summary = ("A verify script (NNNN_name.verify.sql) that writes: it runs inside the "
               "migration's transaction and its changes commit with it.")
    safe_alternative = ("Keep verify scripts to SELECTs (or DO blocks that RAISE); put the "
                        "change in the migration itself.")

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if not ctx.path.endswith(VERIFY_SUFFIX):
            return
        why = write_in(st)
        if why:
            yield Hit(f"verify scripts must only read; this one writes ({why}): {st.short(80)}")
