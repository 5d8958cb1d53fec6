"""blocking-lock: statements that stop reads or writes on a live table while they run."""

from __future__ import annotations

from collections.abc import Iterator

from ..catalog import TYPE
from ..context import (
    ACCESS_EXCLUSIVE,
    LOCK_NAMES,
    SHARE,
    SHARE_ROW_EXCLUSIVE,
    Context,
    statement_locks,
)
from ..parser import Statement
from ..tree import contypes, object_names, option_on, rel_name, strings, unwrap
from .base import Hit, Rule, rule
from .util import table_cmds

# ALTER TABLE trigger switches, as SQL spells them.
TRIGGER_WORDS = {
    "AT_EnableTrig": "ENABLE TRIGGER {name}",
    "AT_EnableAlwaysTrig": "ENABLE ALWAYS TRIGGER {name}",
    "AT_EnableReplicaTrig": "ENABLE REPLICA TRIGGER {name}",
    "AT_DisableTrig": "DISABLE TRIGGER {name}",
    "AT_EnableTrigAll": "ENABLE TRIGGER ALL",
    "AT_DisableTrigAll": "DISABLE TRIGGER ALL",
    "AT_EnableTrigUser": "ENABLE TRIGGER USER",
    "AT_DisableTrigUser": "DISABLE TRIGGER USER",
}


class Locking(Rule):
    category = "blocking-lock"
    severity = "warning"


@rule
class CreateIndex(Locking):
    id, name = "LK01", "create-index-non-concurrently"
    lock = "SHARE (blocks writes for the whole build)"
    summary = "CREATE INDEX without CONCURRENTLY blocks every write to the table while it builds."
    safe_alternative = (
        "CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS in a `-- transactional: false` "
        "migration; "
        "on failure drop the INVALID index and retry. Partitioned: CREATE INDEX ON ONLY parent, "
        "CONCURRENTLY per partition, ALTER INDEX .. ATTACH PARTITION."
    )
    docs = (
        "PostgreSQL 14.0-14.3 CREATE INDEX CONCURRENTLY / REINDEX CONCURRENTLY can corrupt "
        "indexes (fixed in 14.4)."
    )
    statement_kinds = frozenset({"IndexStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        table = rel_name(st.node.get("relation"))
        if not table or ctx.is_new(table):
            return
        if st.node.get("concurrent"):
            if ctx.version_exact and 140000 <= ctx.version < 140004:
                yield Hit(
                    f"CREATE INDEX CONCURRENTLY on PostgreSQL 14.{ctx.version % 100} can silently "
                    "corrupt the index: upgrade to 14.4+ first",
                    table=table,
                )
            return
        if not st.node.get("relation", {}).get("inh", False):
            return  # ON ONLY: metadata only on a partitioned parent (the recommended recipe)
        yield Hit(
            f"CREATE INDEX on {ctx.label(table)} without CONCURRENTLY blocks writes",
            table=table,
        )


@rule
class DropIndex(Locking):
    id, name = "LK02", "drop-index-non-concurrently"
    lock = "ACCESS EXCLUSIVE on the table"
    summary = "DROP INDEX without CONCURRENTLY locks the whole table."
    safe_alternative = "DROP INDEX CONCURRENTLY IF EXISTS in a `-- transactional: false` migration."
    statement_kinds = frozenset({"DropStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.node.get("removeType") != "OBJECT_INDEX" or st.node.get("concurrent"):
            return
        names = [n for n in object_names(st.node) if not ctx.is_new_object(n)]
        if names:
            yield Hit(f"DROP INDEX {', '.join(names)} takes ACCESS EXCLUSIVE on its table")


@rule
class Reindex(Locking):
    id, name = "LK03", "reindex-non-concurrently"
    lock = "ACCESS EXCLUSIVE on the index, SHARE on the table"
    summary = "REINDEX without CONCURRENTLY blocks writes (and reads using the index)."
    safe_alternative = (
        "REINDEX (CONCURRENTLY) ... on PostgreSQL 12+ (avoid 14.0-14.3), or pg_repack."
    )
    statement_kinds = frozenset({"ReindexStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if option_on(st.node.get("params"), "concurrently"):
            return
        if st.node.get("kind") == "REINDEX_OBJECT_SYSTEM":
            return  # system catalogs only, and there is no CONCURRENTLY form for them
        target = rel_name(st.node.get("relation")) or st.node.get("name") or "?"
        if st.node.get("kind") == "REINDEX_OBJECT_INDEX" and ctx.is_new_object(target):
            return
        table = target if st.node.get("kind") == "REINDEX_OBJECT_TABLE" else None
        if table and ctx.is_new(table):
            return
        hint = (
            ""
            if ctx.pg(12)
            else f" ({ctx.version_text} has no REINDEX CONCURRENTLY: use pg_repack)"
        )
        yield Hit(f"REINDEX {target} without CONCURRENTLY{hint}", table=table)


@rule
class AddUnique(Locking):
    id, name = "LK04", "add-unique-constraint"
    lock = "ACCESS EXCLUSIVE while the index builds"
    summary = "ADD CONSTRAINT .. UNIQUE builds its index under ACCESS EXCLUSIVE."
    safe_alternative = (
        "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT .. UNIQUE USING INDEX idx."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if ctx.is_new(cmd.table):
                continue
            if (
                cmd.subtype == "AT_AddConstraint"
                and cmd.definition.get("contype") == "CONSTR_UNIQUE"
                and not cmd.definition.get("indexname")
            ):
                yield Hit(
                    f"UNIQUE constraint on {cmd.table} builds its index under ACCESS EXCLUSIVE",
                    table=cmd.table,
                )
            elif cmd.subtype == "AT_AddColumn" and "CONSTR_UNIQUE" in contypes(cmd.definition):
                yield Hit(
                    f"ADD COLUMN .. UNIQUE on {cmd.table} builds an index under ACCESS EXCLUSIVE",
                    table=cmd.table,
                )


@rule
class AddPrimaryKey(Locking):
    id, name = "LK05", "add-primary-key"
    lock = "ACCESS EXCLUSIVE (+ NOT NULL scan of nullable columns)"
    summary = "ADD PRIMARY KEY builds an index (and scans for NULLs) under ACCESS EXCLUSIVE."
    safe_alternative = (
        "Make the columns NOT NULL safely (LK08 recipe), CREATE UNIQUE INDEX CONCURRENTLY, then "
        "ADD CONSTRAINT pk PRIMARY KEY USING INDEX."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if ctx.is_new(cmd.table):
                continue
            d = cmd.definition
            if cmd.subtype == "AT_AddConstraint" and d.get("contype") == "CONSTR_PRIMARY":
                if d.get("indexname"):
                    yield Hit(
                        f"PRIMARY KEY USING INDEX on {cmd.table}: scans for NULLs under ACCESS "
                        "EXCLUSIVE unless the columns are already NOT NULL (cannot be decided "
                        "statically)",
                        table=cmd.table,
                    )
                else:
                    yield Hit(
                        f"PRIMARY KEY on {cmd.table} builds its index under ACCESS EXCLUSIVE",
                        table=cmd.table,
                    )
            elif cmd.subtype == "AT_AddColumn" and "CONSTR_PRIMARY" in contypes(d):
                yield Hit(
                    f"ADD COLUMN .. PRIMARY KEY on {cmd.table} rewrites and indexes under "
                    f"ACCESS EXCLUSIVE",
                    table=cmd.table,
                )


@rule
class AddForeignKey(Locking):
    id, name = "LK06", "add-foreign-key-validated"
    lock = "SHARE ROW EXCLUSIVE on both tables + full validation scan"
    summary = "A validated FOREIGN KEY scans the table while blocking writes on both tables."
    safe_alternative = (
        "ADD CONSTRAINT .. FOREIGN KEY .. NOT VALID, then VALIDATE CONSTRAINT in a separate "
        "transaction; one foreign key per migration."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if ctx.is_new(cmd.table):
                continue
            d = cmd.definition
            if (
                cmd.subtype == "AT_AddConstraint"
                and d.get("contype") == "CONSTR_FOREIGN"
                and not d.get("skip_validation")
            ):
                ref = rel_name(d.get("pktable"))
                yield Hit(
                    f"FOREIGN KEY {cmd.table} -> {ref} validated immediately (no NOT VALID)",
                    table=cmd.table,
                )
            elif cmd.subtype == "AT_AddColumn" and "CONSTR_FOREIGN" in contypes(d):
                yield Hit(
                    f"ADD COLUMN .. REFERENCES on {cmd.table} adds a validated foreign key",
                    table=cmd.table,
                )


@rule
class AddCheck(Locking):
    id, name = "LK07", "add-check-validated"
    lock = "ACCESS EXCLUSIVE + full scan"
    summary = "A CHECK constraint added without NOT VALID scans the table under ACCESS EXCLUSIVE."
    safe_alternative = (
        "ADD CONSTRAINT .. CHECK (..) NOT VALID; VALIDATE CONSTRAINT later in a separate "
        "transaction."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if ctx.is_new(cmd.table):
                continue
            if (
                cmd.subtype == "AT_AddConstraint"
                and cmd.definition.get("contype") == "CONSTR_CHECK"
                and not cmd.definition.get("skip_validation")
            ):
                yield Hit(
                    f"CHECK constraint on {cmd.table} validated under ACCESS EXCLUSIVE",
                    table=cmd.table,
                )
            elif cmd.subtype == "AT_AddColumn" and "CONSTR_CHECK" in contypes(cmd.definition):
                yield Hit(
                    f"ADD COLUMN .. CHECK on {cmd.table} validates under ACCESS EXCLUSIVE",
                    table=cmd.table,
                )


@rule
class SetNotNull(Locking):
    id, name = "LK08", "set-not-null"
    lock = "ACCESS EXCLUSIVE + full scan"
    summary = "SET NOT NULL scans the whole table under ACCESS EXCLUSIVE."
    safe_alternative = (
        "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID -> VALIDATE CONSTRAINT c -> SET "
        "NOT NULL "
        "-> DROP CONSTRAINT c (PostgreSQL 12+; on 18: ADD CONSTRAINT c NOT NULL col NOT VALID "
        "+ VALIDATE)."
    )
    docs = "PG12+: the scan is skipped when a validated CHECK (col IS NOT NULL) exists."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if ctx.is_new(cmd.table):
                continue
            if cmd.subtype == "AT_SetNotNull":
                column = ctx.model.column(cmd.table, cmd.name)
                if column is not None and column.notnull:
                    continue  # already NOT NULL: nothing to check
                if ctx.pg(12) and ctx.not_null_proven(cmd.table, cmd.name):
                    continue
                if not ctx.pg(12):
                    note = f" ({ctx.version_text}: always scans)"
                elif ctx.ref(cmd.table).existing:
                    note = " (no validated CHECK (col IS NOT NULL) on it in the database)"
                else:
                    note = (" (no scan only if a validated CHECK (col IS NOT NULL) already "
                            "exists: none in these migrations, cannot be decided offline)")
                yield Hit(
                    f"SET NOT NULL on {cmd.table}.{cmd.name} scans the table{note}", table=cmd.table
                )
            elif (
                cmd.subtype == "AT_AddConstraint"
                and cmd.definition.get("contype") == "CONSTR_NOTNULL"
                and not cmd.definition.get("skip_validation")
            ):
                cols = ", ".join(strings(cmd.definition.get("keys")))
                yield Hit(
                    f"ADD CONSTRAINT .. NOT NULL {cols} on {cmd.table} scans the table",
                    table=cmd.table,
                )


@rule
class AddExclusion(Locking):
    id, name = "LK09", "add-exclusion-constraint"
    lock = "ACCESS EXCLUSIVE + index build"
    summary = "EXCLUDE constraints build an index under ACCESS EXCLUSIVE; there is no online path."
    safe_alternative = "Schedule maintenance, or build on a new table and swap."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if (
                cmd.subtype == "AT_AddConstraint"
                and cmd.definition.get("contype") == "CONSTR_EXCLUSION"
                and not ctx.is_new(cmd.table)
            ):
                yield Hit(
                    f"EXCLUDE constraint on {cmd.table} (no NOT VALID / USING INDEX path)",
                    table=cmd.table,
                )


@rule
class ValidateInSameTx(Locking):
    id, name = "LK10", "validate-in-same-transaction"
    lock = "inherits the earlier strong lock for the whole scan"
    summary = (
        "VALIDATE CONSTRAINT after a strong lock in the same transaction scans under that lock."
    )
    safe_alternative = "Put VALIDATE CONSTRAINT in its own migration (its own transaction)."
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if not ctx.in_tx:
            return
        for cmd in table_cmds(st):
            if cmd.subtype != "AT_ValidateConstraint":
                continue
            held = ctx.segment.locks.get(cmd.table)
            if held and held[0] >= SHARE_ROW_EXCLUSIVE:
                yield Hit(
                    f"VALIDATE CONSTRAINT {cmd.name} runs while {LOCK_NAMES[held[0]]} on "
                    f"{cmd.table} "
                    f"(taken at line {held[1]}) is still held",
                    table=cmd.table,
                )


@rule
class DetachPartition(Locking):
    id, name = "LK11", "detach-partition-non-concurrently"
    lock = "ACCESS EXCLUSIVE on the parent"
    summary = "DETACH PARTITION without CONCURRENTLY locks the partitioned parent."
    safe_alternative = (
        "ALTER TABLE parent DETACH PARTITION p CONCURRENTLY (PostgreSQL 14+, outside a "
        "transaction)."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if (
                cmd.subtype == "AT_DetachPartition"
                and not cmd.definition.get("concurrent")
                and not ctx.is_new(cmd.table)
            ):
                hint = "" if ctx.pg(14) else f" ({ctx.version_text} has no CONCURRENTLY form)"
                yield Hit(
                    f"DETACH PARTITION from {cmd.table} takes ACCESS EXCLUSIVE on it{hint}",
                    table=cmd.table,
                )


@rule
class AttachPartition(Locking):
    id, name = "LK12", "attach-partition-scan"
    lock = "SHARE UPDATE EXCLUSIVE on parent (PG12+), ACCESS EXCLUSIVE on the attached table + scan"
    summary = (
        "ATTACH PARTITION scans the new partition (and the default partition) to check the bound."
    )
    safe_alternative = (
        "Add a CHECK matching the bound NOT VALID, VALIDATE it, ATTACH, then drop the CHECK."
    )
    statement_kinds = frozenset({"AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        for cmd in table_cmds(st):
            if cmd.subtype != "AT_AttachPartition":
                continue
            part = rel_name(cmd.definition.get("name"))
            if ctx.is_new(part):
                continue
            parent_lock = "SHARE UPDATE EXCLUSIVE" if ctx.pg(12) else "ACCESS EXCLUSIVE"
            yield Hit(
                f"ATTACH PARTITION {part} to {cmd.table}: scans {part} under ACCESS EXCLUSIVE "
                f"unless a "
                f"validated CHECK implies the bound (cannot be decided statically); "
                f"{parent_lock} on "
                f"{cmd.table} on {ctx.version_text}",
                table=part,
            )


@rule
class RefreshMatView(Locking):
    id, name = "LK13", "refresh-matview-blocking"
    lock = "ACCESS EXCLUSIVE (blocks reads)"
    summary = "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks every read of the view."
    safe_alternative = "REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index on the view)."
    statement_kinds = frozenset({"RefreshMatViewStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        view = rel_name(st.node.get("relation"))
        if not st.node.get("concurrent") and not ctx.is_new(view):
            yield Hit(
                f"REFRESH MATERIALIZED VIEW {view} blocks reads until it finishes", table=view
            )


@rule
class ExplicitLock(Locking):
    id, name = "LK14", "explicit-lock-table"
    lock = "as requested"
    summary = "LOCK TABLE in SHARE mode or stronger blocks writers (ACCESS EXCLUSIVE: readers too)."
    safe_alternative = "Avoid; if unavoidable set lock_timeout and keep the transaction short."
    statement_kinds = frozenset({"LockStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        mode = int(st.node.get("mode", ACCESS_EXCLUSIVE))
        if mode < SHARE:
            return
        for r in st.node.get("relations", []):
            _, rv = unwrap(r)
            table = rel_name(rv)
            if table and not ctx.is_new(table):
                yield Hit(f"LOCK TABLE {table} IN {LOCK_NAMES.get(mode, mode)} MODE", table=table)


@rule
class TriggerDdl(Locking):
    id, name = "LK15", "trigger-ddl-on-existing-table"
    lock = "SHARE ROW EXCLUSIVE (blocks writes)"
    summary = (
        "CREATE TRIGGER / ENABLE|DISABLE TRIGGER on a live table blocks writes while it waits."
    )
    safe_alternative = "Set a short lock_timeout; create during low traffic."
    statement_kinds = frozenset({"CreateTrigStmt", "AlterTableStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "CreateTrigStmt":
            table = rel_name(st.node.get("relation"))
            if table and not ctx.is_new(table):
                yield Hit(
                    f"CREATE TRIGGER {st.node.get('trigname', '')} on {ctx.label(table)}",
                    table=table,
                )
            return
        for cmd in table_cmds(st):
            if cmd.subtype in TRIGGER_WORDS and not ctx.is_new(cmd.table):
                what = TRIGGER_WORDS[cmd.subtype].format(name=cmd.name or "")
                yield Hit(
                    f"{what.replace('  ', ' ')} on {cmd.table} takes SHARE ROW EXCLUSIVE",
                    table=cmd.table,
                )


@rule
class DomainConstraint(Locking):
    id, name = "LK16", "alter-domain-add-constraint"
    lock = "scans every column that uses the domain"
    summary = "ALTER DOMAIN .. ADD CONSTRAINT checks every column of that domain in every table."
    safe_alternative = (
        "Prefer table/column CHECK constraints (NOT VALID + VALIDATE); or ADD .. NOT VALID."
    )
    statement_kinds = frozenset({"AlterDomainStmt", "CreateDomainStmt"})

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if st.kind == "AlterDomainStmt":
            name = ".".join(strings(st.node.get("typeName")))
            if st.node.get("subtype") != "C" or ctx.is_new_object(name, TYPE):
                return
            _, con = unwrap(st.node.get("def"))
            if con.get("skip_validation"):
                return
            yield Hit(f"ALTER DOMAIN {name} ADD CONSTRAINT scans every column using the domain")
        elif st.node.get("constraints"):
            name = ".".join(strings(st.node.get("domainname")))
            yield Hit(
                f"CREATE DOMAIN {name} with constraints: later constraint changes scan every "
                "column using it (tracking risk)"
            )


def _lock_needing(st: Statement, ctx: Context) -> tuple[str, int] | None:
    for table, mode in statement_locks(st):
        if mode >= SHARE and not ctx.is_new(table):
            return table, mode
    return None


@rule
class MissingLockTimeout(Locking):
    id, name = "LK17", "missing-lock-timeout"
    severity = "info"
    lock = "n/a (lock-queue amplification)"
    summary = (
        "A statement waiting for a strong lock queues every later query on that table behind it."
    )
    safe_alternative = (
        "SET lock_timeout = '1s'..'5s' with retries. migrate-job already applies "
        "MIGRATE_LOCK_TIMEOUT "
        "(default 5s) and retries; set it in the file when it is also run by other tools."
    )
    docs = (
        "Reported once per run, at the first statement that needs a SHARE or stronger lock, and "
        "never when migrate-job runs the statement under its own MIGRATE_LOCK_TIMEOUT."
    )

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if ctx.lock_timeout_set or "LK17" in ctx.run.reported:
            return
        hit = _lock_needing(st, ctx)
        if hit:
            ctx.run.reported.add("LK17")
            yield Hit(
                f"{LOCK_NAMES[hit[1]]} on {hit[0]} with no lock_timeout: neither the file nor "
                "MIGRATE_LOCK_TIMEOUT sets one (reported once per run)",
                table=hit[0],
            )


@rule
class MissingStatementTimeout(Locking):
    id, name = "LK18", "missing-statement-timeout"
    severity = "info"
    lock = "n/a"
    summary = (
        "A long statement under a strong lock has no upper bound on how long it blocks others."
    )
    safe_alternative = (
        "SET statement_timeout suitable for the operation (long for CIC/VALIDATE), or "
        "MIGRATE_STATEMENT_TIMEOUT; PostgreSQL 17 adds transaction_timeout."
    )
    docs = (
        "Reported once per run; never when migrate-job runs the statement under its own "
        "MIGRATE_STATEMENT_TIMEOUT."
    )

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        if ctx.statement_timeout_set or "LK18" in ctx.run.reported:
            return
        hit = _lock_needing(st, ctx)
        if hit:
            ctx.run.reported.add("LK18")
            yield Hit(
                f"{LOCK_NAMES[hit[1]]} on {hit[0]} with no statement_timeout: neither the file "
                "nor MIGRATE_STATEMENT_TIMEOUT sets one (reported once per run)",
                table=hit[0],
            )


@rule
class MassDmlInDdlTx(Locking):
    id, name = "LK19", "mass-dml-in-ddl-transaction"
    lock = "row locks + the DDL's table lock held for the whole backfill"
    summary = (
        "A backfill in the same transaction as DDL holds the DDL's lock for the whole backfill."
    )
    safe_alternative = "A separate non-transactional migration that backfills in batches."

    def finish(self, ctx: Context) -> Iterator[Hit]:
        for seg in [*ctx.finished_segments, ctx.segment]:
            if not seg.ddl:
                continue
            for st, table in seg.dml:
                yield Hit(
                    f"{st.kind[:-4].upper()} on {table} runs in the same transaction as DDL",
                    table=table,
                    line=st.line,
                    statement=st.short(),
                )
