"""transaction: statements that fail, or misbehave, because of the transaction around them."""

from __future__ import annotations

from collections.abc import Iterator

from ..context import ACCESS_EXCLUSIVE, Context
from ..parser import Statement
from ..tree import option_on, rel_name, strings
from .base import Hit, Rule, rule
from .util import table_cmds

FIX = "-- transactional: false"


def non_transactional(st: Statement, ctx: Context) -> str | None:
    """What makes this statement impossible inside a transaction block, or None."""
    k, n = st.kind, st.node
    if k == "IndexStmt" and n.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY"
    if k == "DropStmt" and n.get("concurrent"):
        return "DROP INDEX CONCURRENTLY"
    if k == "ReindexStmt":
        if option_on(n.get("params"), "concurrently"):
            return "REINDEX CONCURRENTLY"
        if n.get("kind") in ("REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"):
            return "REINDEX SYSTEM/DATABASE"
    if k == "AlterTableStmt":
        for cmd in table_cmds(st):
            if cmd.subtype == "AT_DetachPartition" and cmd.definition.get("concurrent"):
                return "DETACH PARTITION CONCURRENTLY"
    if k == "VacuumStmt" and n.get("is_vacuumcmd"):
        return "VACUUM"
    if k in ("CreatedbStmt", "DropdbStmt"):
        return "CREATE DATABASE" if k == "CreatedbStmt" else "DROP DATABASE"
    if k == "AlterSystemStmt":
        return "ALTER SYSTEM"
    if k in ("CreateTableSpaceStmt", "DropTableSpaceStmt"):
        return "CREATE/DROP TABLESPACE"
    if k == "AlterEnumStmt" and not n.get("oldVal") and not ctx.pg(12):
        return f"ALTER TYPE .. ADD VALUE on {ctx.version_text}"
    return None


class Transaction(Rule):
    category = "transaction"
    severity = "error"
    lock = "n/a"


@rule
class NonTransactionalInTx(Transaction):
    id, name = "TX01", "non-transactional-stmt-in-transaction"
    summary = (
        "A statement that cannot run inside a transaction block, in a migration that runs in one."
    )
    safe_alternative = (
        f"Move it to its own migration whose first line is `{FIX}` (one such statement per file is "
        "easiest to retry)."
    )
    docs = (
        "ALTER TYPE .. ADD VALUE works in a transaction since PG12, but the value is unusable "
        "until commit."
    )
    blocking = True  # it would fail half-way through a deploy

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if not ctx.in_tx:
            return
        what = non_transactional(st, ctx)
        if what is None:
            return
        where = (
            f"inside the BEGIN at line {ctx.explicit_tx_line}"
            if ctx.explicit_tx_line is not None and not ctx.transactional
            else "but migrate-job runs this migration in a transaction"
        )
        yield Hit(f"{what} cannot run inside a transaction block, {where}: add `{FIX}`")


@rule
class TransactionNesting(Transaction):
    id, name = "TX02", "transaction-nesting"
    summary = (
        "BEGIN/COMMIT/ROLLBACK in a file the job already wraps in a transaction (or BEGIN after "
        "BEGIN)."
    )
    safe_alternative = (
        "Don't manage transactions in files the job wraps; use `-- transactional: false` if you "
        "must."
    )
    statement_kinds = frozenset({"TransactionStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        kind = st.node.get("kind", "")
        control = kind in (
            "TRANS_STMT_BEGIN",
            "TRANS_STMT_START",
            "TRANS_STMT_COMMIT",
            "TRANS_STMT_ROLLBACK",
        )
        word = _first_word(st.text) or kind.replace("TRANS_STMT_", "")
        if ctx.transactional and control:
            yield Hit(
                f"{word} inside the transaction migrate-job wraps this migration in"
                + (
                    ": it ends the job's transaction early, so the rest runs outside it and the "
                    "migration is no longer atomic"
                    if kind in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK")
                    else ""
                ),
                blocking=True,  # `run` refuses it before anything runs (exit 2)
            )
        elif kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START") and ctx.explicit_tx_line is not None:
            yield Hit(f"BEGIN while the BEGIN at line {ctx.explicit_tx_line} is still open")
        elif (kind in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK")
              and not ctx.transactional and ctx.explicit_tx_line is None):
            yield Hit(f"{word} with no transaction open (a second COMMIT/ROLLBACK?): PostgreSQL "
                      "only warns, and what was meant to be atomic was not")


@rule
class UncommittedTransaction(Transaction):
    id, name = "TX03", "uncommitted-transaction"
    summary = "BEGIN without COMMIT/ROLLBACK by the end of the file: locks stay held."
    safe_alternative = "Close every transaction you open."

    def finish(self, ctx: Context) -> Iterator[Hit]:
        if ctx.explicit_tx_line is not None and not ctx.transactional:
            yield Hit(
                f"transaction opened at line {ctx.explicit_tx_line} is never committed",
                line=ctx.explicit_tx_line,
            )


_HARMLESS = {"VariableSetStmt", "TransactionStmt", "VariableShowStmt"}


@rule
class LongLockHold(Transaction):
    id, name = "TX04", "long-lock-hold-multi-statement"
    severity = "warning"
    lock = "the earliest strong lock is held until COMMIT"
    summary = (
        "More statements after an ACCESS EXCLUSIVE lock in the same transaction keep the table "
        "blocked."
    )
    safe_alternative = (
        "One risky DDL per transaction; combine ALTER TABLE actions into one statement; one "
        "foreign "
        "key per migration."
    )

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if not ctx.in_tx or st.kind in _HARMLESS:
            return
        key = f"TX04:{id(ctx.segment)}"
        if key in ctx.reported:
            return
        for table, (mode, line) in ctx.segment.locks.items():
            if mode >= ACCESS_EXCLUSIVE:
                ctx.reported.add(key)
                again = rel_name(st.node.get("relation")) == table and st.kind == "AlterTableStmt"
                extra = (
                    " (another ALTER of the same table: combine them into one statement)"
                    if again
                    else ""
                )
                yield Hit(
                    f"statement runs while ACCESS EXCLUSIVE on {table} (taken at line {line}) "
                    f"is held "
                    f"until COMMIT{extra}",
                    table=table,
                )
                return


def _first_word(text: str) -> str:
    words = text.split(None, 1)
    return words[0].upper().rstrip(";") if words else ""


def _temporary(st: Statement) -> bool:
    """Temporary objects vanish with the session: a retry starts clean."""
    rv = st.node.get("relation") or st.node.get("sequence") or st.node.get("view")
    if st.kind == "CreateTableAsStmt":
        rv = (st.node.get("into") or {}).get("rel")
    return isinstance(rv, dict) and rv.get("relpersistence") == "t"


def _missing_if(st: Statement, ctx: Context) -> str | None:
    k, n = st.kind, st.node
    if _temporary(st):
        return None
    if k in (
        "CreateStmt",
        "CreateSeqStmt",
        "CreateSchemaStmt",
        "CreateExtensionStmt",
        "IndexStmt",
        "CreateTableAsStmt",
    ) and not n.get("if_not_exists"):
        return "CREATE without IF NOT EXISTS"
    if k == "DropStmt" and not n.get("missing_ok"):
        return "DROP without IF EXISTS"
    if k == "AlterTableStmt":
        for cmd in table_cmds(st):
            if cmd.subtype == "AT_AddColumn" and not cmd.body.get("missing_ok"):
                return "ADD COLUMN without IF NOT EXISTS"
            if cmd.subtype == "AT_DropColumn" and not cmd.body.get("missing_ok"):
                return "DROP COLUMN without IF EXISTS"
            if cmd.subtype == "AT_DropConstraint":
                if cmd.body.get("missing_ok"):
                    ctx.reported.add(f"TX05-dropped:{cmd.table}:{cmd.name}")
                else:
                    return "DROP CONSTRAINT without IF EXISTS"
            if cmd.subtype == "AT_AddConstraint":
                name = cmd.definition.get("conname")
                if not name or f"TX05-dropped:{cmd.table}:{name}" not in ctx.reported:
                    return ("ADD CONSTRAINT without a DROP CONSTRAINT IF EXISTS of the same "
                            "name before it")
    return None


@rule
class NonIdempotent(Transaction):
    id, name = "TX05", "non-idempotent-stmt"
    severity = "warning"
    summary = (
        "Outside a transaction, a statement that fails when re-run after a half-applied migration."
    )
    safe_alternative = (
        "IF [NOT] EXISTS, so a half-applied non-transactional migration can be re-run."
    )

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if ctx.in_tx:
            return
        what = _missing_if(st, ctx)
        if what:
            yield Hit(f"{what} in a non-transactional migration: a retry after a partial run fails")


def _names(items: object) -> str:
    return ".".join(strings(items))
