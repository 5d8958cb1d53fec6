"""What the analyzer knows while it walks one migration: versions, transaction state, objects
created so far, locks held. Rules read it; only `Context.observe` writes it, after every rule has
seen the statement, so "created earlier" never includes the statement being checked."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import effects
from .catalog import EXISTING, REL, SYSTEM, Catalog, Ref
from .model import DataSubject, SafetyConfig
from .parser import Statement
from .tree import (
    Node,
    option_on,
    rel_name,
    strings,
    unwrap,
    walk,
)

# PostgreSQL lock modes, weakest to strongest (LockStmt.mode uses the same numbers).
ACCESS_SHARE, ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE = 1, 2, 3, 4
SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE = 5, 6, 7, 8
LOCK_NAMES = {
    1: "ACCESS SHARE",
    2: "ROW SHARE",
    3: "ROW EXCLUSIVE",
    4: "SHARE UPDATE EXCLUSIVE",
    5: "SHARE",
    6: "SHARE ROW EXCLUSIVE",
    7: "EXCLUSIVE",
    8: "ACCESS EXCLUSIVE",
}


@dataclass
class Segment:
    """One transaction: the whole file when the job wraps it, else BEGIN..COMMIT."""

    start_line: int = 0
    locks: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (mode, line)
    ddl: bool = False
    dml: list[tuple[Statement, str]] = field(default_factory=list)
    tx04_reported: bool = False
    alters: dict[str, int] = field(default_factory=dict)


@dataclass
class RunState:
    """What lasts from one migration of the run to the next: the model of the target, the
    session's timeouts, once-per-run reports."""

    model: Catalog
    # The job's own session settings (seconds, 0 = none): migrate-job sets them on every
    # migration session, so statements it runs are covered (LK17/LK18 stay quiet).
    lock_timeout: float = 0.0
    statement_timeout: float = 0.0
    reported: set[str] = field(default_factory=set)


@dataclass
class Context:
    migration: str
    path: str
    transactional: bool
    version: int  # server_version_num used for gating
    version_known: bool
    version_exact: bool  # from the server itself (minor version meaningful)
    config: SafetyConfig
    run: RunState
    rollback_script: bool = False  # a *.rollback.sql file
    explicit_tx_line: int | None = None  # line of an open BEGIN
    lock_timeout_set: bool = False
    statement_timeout_set: bool = False
    segment: Segment = field(default_factory=Segment)
    finished_segments: list[Segment] = field(default_factory=list)
    reported: set[str] = field(default_factory=set)  # once-per-file/segment rules mark here
    undo: bool = False  # the file can ROLLBACK: the model keeps what it needs to undo

    def __post_init__(self) -> None:
        self.lock_timeout_set = self.run.lock_timeout > 0
        self.statement_timeout_set = self.run.statement_timeout > 0
        if self.transactional and self.undo:
            self.model.begin()

    @property
    def model(self) -> Catalog:
        return self.run.model

    @property
    def in_tx(self) -> bool:
        return self.transactional or self.explicit_tx_line is not None

    def ref(self, name: str | None, ns: str = REL) -> Ref:
        return self.model.resolve(name, ns)

    def is_new(self, table: str | None) -> bool:
        """Created by the run (or absent from the target): no traffic, no data from before."""
        return table is not None and self.model.resolve(table).fresh

    def is_new_object(self, name: str | None, ns: str = REL) -> bool:
        return name is not None and self.model.resolve(name, ns).fresh

    def label(self, table: str | None) -> str:
        """'existing table orders' only when it exists in the database, else 'table orders'."""
        ref = self.model.resolve(table)
        shown = table or "?"
        return f"existing table {shown}" if ref.status == EXISTING else f"table {shown}"

    def rows_subject(self, table: str | None) -> DataSubject | None:
        """What DROP/TRUNCATE/DELETE of this table loses, when it exists in the database."""
        ref = self.model.resolve(table)
        obj = ref.obj
        if ref.status != EXISTING or obj is None or not obj.db_name:
            return None
        if obj.kind not in ("table", "partitioned"):
            return None
        return DataSubject("rows", obj.db_name, label=table or obj.db_name)

    def values_subject(self, table: str | None, col: str) -> DataSubject | None:
        """What DROP COLUMN / a lossy type change loses: the column's non-null values."""
        ref, obj = self.model.table(table)
        if ref.status != EXISTING or obj is None or not obj.db_name:
            return None
        if obj.kind not in ("table", "partitioned"):
            return None
        c = (obj.columns or {}).get(col)
        if c is None or c.origin != EXISTING:
            return None
        return DataSubject("values", obj.db_name, column=c.db_name or col,
                           label=f"{table}.{col}", notnull=c.notnull)

    def constraint_kind(self, table: str, name: str) -> str | None:
        _, obj = self.model.table(table)
        if obj is None:
            return None
        if name in (obj.checks or {}):
            return "CONSTR_CHECK"
        return obj.constraints.get(name)

    def pg(self, major: int) -> bool:
        """Server is at least this major version."""
        return self.version >= major * 10000

    @property
    def version_text(self) -> str:
        major = self.version // 10000
        return f"PostgreSQL {major}" + ("" if self.version_known else " (assumed)")

    # -- state updates, after every rule has seen the statement -------------------------------

    def observe(self, st: Statement) -> None:
        kind, n = st.kind, st.node
        if kind == "TransactionStmt":
            self._transaction(n.get("kind", ""), st.line)
            return
        if kind == "VariableSetStmt":
            self._setting(n)
        elif kind == "SelectStmt":
            for name, body in walk(n.get("targetList")):
                if name == "FuncCall" and strings(body.get("funcname"))[-1:] == ["set_config"]:
                    self._set_config(body)
        # Locks and DML are judged against the model *before* this statement changes it.
        for table, mode in statement_locks(st):
            if self.is_new(table):
                continue
            prev = self.segment.locks.get(table)
            if prev is None or prev[0] < mode:
                self.segment.locks[table] = (mode, st.line)
        if is_ddl(kind):
            self.segment.ddl = True
        target = dml_target(st)
        if target and not self.is_new(target) and self.model.resolve(target).status != SYSTEM:
            self.segment.dml.append((st, target))
        if kind == "AlterTableStmt":
            altered = rel_name(n.get("relation"))
            if altered and not self.is_new(altered):
                self.segment.alters[altered] = self.segment.alters.get(altered, 0) + 1
        effects.apply(self.model, st)
        if not self.in_tx:
            self._end_segment(st.line)

    def finish(self) -> None:
        """End of file: the job commits its transaction (the model keeps what it learnt)."""
        while self.model.in_transaction:
            self.model.commit()

    def _transaction(self, kind: str, line: int) -> None:
        if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
            if self.explicit_tx_line is None:
                if not self.transactional:
                    self._end_segment(line)
                    if self.undo:
                        self.model.begin()
                self.explicit_tx_line = line
        elif kind == "TRANS_STMT_SAVEPOINT":
            if self.undo and self.model.in_transaction:
                self.model.begin()
        elif kind == "TRANS_STMT_RELEASE":
            if self.undo and self.model.in_transaction:
                self.model.commit()
        elif kind == "TRANS_STMT_ROLLBACK_TO":
            if self.undo and self.model.in_transaction:
                self.model.rollback()
                self.model.begin()
        elif kind in (
            "TRANS_STMT_COMMIT",
            "TRANS_STMT_ROLLBACK",
            "TRANS_STMT_COMMIT_PREPARED",
            "TRANS_STMT_PREPARE",
            "TRANS_STMT_ROLLBACK_PREPARED",
        ):
            if self.undo:
                while self.model.in_transaction:
                    if kind == "TRANS_STMT_ROLLBACK":
                        self.model.rollback()
                    else:
                        self.model.commit()
            self.explicit_tx_line = None
            self._end_segment(line)
            self.lock_timeout_set = self.lock_timeout_set and not self._local_timeouts
            self.statement_timeout_set = self.statement_timeout_set and not self._local_timeouts

    _local_timeouts = False

    def _end_segment(self, line: int) -> None:
        self.finished_segments.append(self.segment)
        self.segment = Segment(start_line=line)

    def _setting(self, n: Node) -> None:
        name = n.get("name", "")
        setting = n.get("kind") == "VAR_SET_VALUE"
        if name == "lock_timeout":
            self.lock_timeout_set = setting and not _zero(n.get("args"))
        elif name == "statement_timeout":
            self.statement_timeout_set = setting and not _zero(n.get("args"))
        if n.get("is_local"):
            self._local_timeouts = True

    def _set_config(self, call: Node) -> None:
        args = call.get("args", [])
        if not args:
            return
        kind, body = unwrap(args[0])
        if kind == "A_Const":
            name = (body.get("sval") or {}).get("sval")
            if name == "lock_timeout":
                self.lock_timeout_set = True
            elif name == "statement_timeout":
                self.statement_timeout_set = True

    def not_null_proven(self, table: str, col: str) -> bool:
        """A validated CHECK (col IS NOT NULL) exists (in the database or made by the run), or
        the column is NOT NULL already: SET NOT NULL needs no scan (PostgreSQL 12+)."""
        _, obj = self.model.table(table)
        if obj is None:
            return False
        column = (obj.columns or {}).get(col)
        if column is not None and column.notnull:
            return True
        return any(ch.validated and col in ch.not_null for ch in (obj.checks or {}).values())

    def checks_on(self, table: str, col: str) -> list[str]:
        """Names of CHECK constraints that read this column (known from the model)."""
        _, obj = self.model.table(table)
        if obj is None:
            return []
        return sorted(name for name, ch in (obj.checks or {}).items() if col in ch.columns)


def _zero(args: list[Node] | None) -> bool:
    for a in args or []:
        kind, body = unwrap(a)
        if kind == "A_Const":
            if "ival" in body:
                return int((body.get("ival") or {}).get("ival", 0)) == 0
            sval = (body.get("sval") or {}).get("sval", "")
            return sval.strip() in ("0", "0s", "0ms", "")
    return False


_DDL_KINDS = {
    "AlterTableStmt",
    "IndexStmt",
    "DropStmt",
    "RenameStmt",
    "CreateStmt",
    "TruncateStmt",
    "CreateTrigStmt",
    "AlterObjectSchemaStmt",
    "ClusterStmt",
    "ReindexStmt",
    "ViewStmt",
    "CreateTableAsStmt",
    "AlterDomainStmt",
    "CreatePolicyStmt",
    "AlterPolicyStmt",
    "LockStmt",
    "AlterEnumStmt",
    "CreateEnumStmt",
    "CreateFunctionStmt",
    "CreateSeqStmt",
    "AlterSeqStmt",
    "CreateDomainStmt",
    "CompositeTypeStmt",
    "CreateSchemaStmt",
    "CreateExtensionStmt",
    "AlterExtensionStmt",
    "RefreshMatViewStmt",
    "GrantStmt",
}


def dml_target(st: Statement) -> str | None:
    """Table of an UPDATE/DELETE/MERGE/INSERT .. SELECT (a backfill), else None."""
    if st.kind in ("UpdateStmt", "DeleteStmt", "MergeStmt"):
        return rel_name(st.node.get("relation"))
    if st.kind == "InsertStmt":
        _, sel = unwrap(st.node.get("selectStmt"))
        if sel and not sel.get("valuesLists"):
            return rel_name(st.node.get("relation"))
    return None


def is_ddl(kind: str) -> bool:
    return kind in _DDL_KINDS


_WEAK_SUBCMDS = {
    "AT_ValidateConstraint": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetStatistics": SHARE_UPDATE_EXCLUSIVE,
    "AT_ClusterOn": SHARE_UPDATE_EXCLUSIVE,
    "AT_DropCluster": SHARE_UPDATE_EXCLUSIVE,
    "AT_SetRelOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_ResetRelOptions": SHARE_UPDATE_EXCLUSIVE,
    "AT_EnableTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableAlwaysTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableReplicaTrig": SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrig": SHARE_ROW_EXCLUSIVE,
    "AT_EnableTrigAll": SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrigAll": SHARE_ROW_EXCLUSIVE,
    "AT_EnableTrigUser": SHARE_ROW_EXCLUSIVE,
    "AT_DisableTrigUser": SHARE_ROW_EXCLUSIVE,
}


def statement_locks(st: Statement) -> list[tuple[str, int]]:
    """(table, lock mode) this statement takes on existing relations, as far as the text shows."""
    kind, n = st.kind, st.node
    if kind == "AlterTableStmt":
        table = rel_name(n.get("relation"))
        if not table or n.get("objtype") not in (
            "OBJECT_TABLE",
            "OBJECT_MATVIEW",
            "OBJECT_FOREIGN_TABLE",
        ):
            return []
        mode = 0
        for cmd in n.get("cmds", []):
            _, c = unwrap(cmd)
            sub = c.get("subtype", "")
            m = _WEAK_SUBCMDS.get(sub, ACCESS_EXCLUSIVE)
            dname, d = unwrap(c.get("def"))
            if sub == "AT_AddConstraint" and d.get("contype") == "CONSTR_FOREIGN":
                m = SHARE_ROW_EXCLUSIVE
            if sub == "AT_AttachPartition":
                m = SHARE_UPDATE_EXCLUSIVE
            if sub == "AT_DetachPartition" and d.get("concurrent"):
                m = SHARE_UPDATE_EXCLUSIVE
            mode = max(mode, m)
        return [(table, mode)] if mode else []
    if kind == "IndexStmt":
        table = rel_name(n.get("relation"))
        if not table:
            return []
        return [(table, SHARE_UPDATE_EXCLUSIVE if n.get("concurrent") else SHARE)]
    if kind == "DropStmt" and n.get("removeType") in (
        "OBJECT_TABLE",
        "OBJECT_MATVIEW",
        "OBJECT_VIEW",
    ):
        from .tree import object_names

        return [(t, ACCESS_EXCLUSIVE) for t in object_names(n)]
    if kind == "TruncateStmt":
        out = []
        for r in n.get("relations", []):
            _, rv = unwrap(r)
            t = rel_name(rv)
            if t:
                out.append((t, ACCESS_EXCLUSIVE))
        return out
    if kind == "LockStmt":
        out = []
        for r in n.get("relations", []):
            _, rv = unwrap(r)
            t = rel_name(rv)
            if t:
                out.append((t, int(n.get("mode", ACCESS_EXCLUSIVE))))
        return out
    if kind == "RenameStmt" and n.get("relation"):
        t = rel_name(n.get("relation"))
        return [(t, ACCESS_EXCLUSIVE)] if t else []
    if kind == "CreateTrigStmt":
        t = rel_name(n.get("relation"))
        return [(t, SHARE_ROW_EXCLUSIVE)] if t else []
    if kind == "RefreshMatViewStmt":
        t = rel_name(n.get("relation"))
        return [(t, EXCLUSIVE if n.get("concurrent") else ACCESS_EXCLUSIVE)] if t else []
    if kind == "ClusterStmt":
        t = rel_name(n.get("relation"))
        return [(t, ACCESS_EXCLUSIVE)] if t else []
    if kind == "VacuumStmt" and option_on(n.get("options"), "full"):
        out = []
        for r in n.get("rels", []):
            _, vr = unwrap(r)
            t = rel_name(vr.get("relation"))
            if t:
                out.append((t, ACCESS_EXCLUSIVE))
        return out
    if kind == "ReindexStmt" and not option_on(n.get("params"), "concurrently"):
        t = rel_name(n.get("relation"))
        if t and n.get("kind") == "REINDEX_OBJECT_TABLE":
            return [(t, SHARE)]
        return []
    if kind == "AlterObjectSchemaStmt" and n.get("relation"):
        t = rel_name(n.get("relation"))
        return [(t, ACCESS_EXCLUSIVE)] if t else []
    if kind in ("CreatePolicyStmt", "AlterPolicyStmt"):
        t = rel_name(n.get("table"))
        return [(t, ACCESS_EXCLUSIVE)] if t else []
    return []
