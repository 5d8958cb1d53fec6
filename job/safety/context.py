"""What the analyzer knows while it walks one migration: versions, transaction state, objects
created so far, locks held. Rules read it; only `Context.observe` writes it, after every rule has
seen the statement, so "created earlier" never includes the statement being checked."""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import SafetyConfig
from .parser import Statement
from .tree import (
    Node,
    TypeInfo,
    base_name,
    constraints,
    def_elem_names,
    rel_name,
    strings,
    type_info,
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
class Column:
    type: TypeInfo | None
    generated: str = ""  # "s" stored, "v" virtual, "" plain


@dataclass
class Schema:
    """Columns of tables created by the files analysed so far (all migrations of this run), so
    a later type change can be judged; an unknown table means 'cannot be decided offline'."""

    tables: dict[str, dict[str, Column]] = field(default_factory=dict)

    def column(self, table: str, col: str) -> Column | None:
        return self.tables.get(base_name(table), {}).get(col)


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
class Context:
    migration: str
    path: str
    transactional: bool
    version: int  # server_version_num used for gating
    version_known: bool
    version_exact: bool  # from the server itself (minor version meaningful)
    config: SafetyConfig
    schema: Schema
    created_tables: set[str] = field(default_factory=set)
    created_indexes: set[str] = field(default_factory=set)
    created_objects: set[str] = field(default_factory=set)
    explicit_tx_line: int | None = None  # line of an open BEGIN
    lock_timeout_set: bool = False
    statement_timeout_set: bool = False
    lk17_reported: bool = False
    lk18_reported: bool = False
    segment: Segment = field(default_factory=Segment)
    finished_segments: list[Segment] = field(default_factory=list)
    # constraint name -> (table, contype, columns it proves NOT NULL)
    constraints: dict[str, tuple[str, str, tuple[str, ...]]] = field(default_factory=dict)
    not_valid: set[str] = field(default_factory=set)
    notnull_checks: set[tuple[str, str]] = field(default_factory=set)  # validated (table, col)
    reported: set[str] = field(default_factory=set)  # once-per-file/segment rules mark here

    @property
    def in_tx(self) -> bool:
        return self.transactional or self.explicit_tx_line is not None

    def is_new(self, table: str | None) -> bool:
        return table is not None and base_name(table) in self.created_tables

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
            for name, body in walk(n):
                if name == "FuncCall" and strings(body.get("funcname"))[-1:] == ["set_config"]:
                    self._set_config(body)
        if kind == "CreateStmt" and not n.get("if_not_exists"):
            table = rel_name(n.get("relation"))
            if table:
                self.created_tables.add(base_name(table))
                self._record_columns(table, n.get("tableElts", []))
        elif kind == "CreateTableAsStmt" and not n.get("if_not_exists"):
            table = rel_name((n.get("into") or {}).get("rel"))
            if table:
                self.created_tables.add(base_name(table))
        elif kind == "IndexStmt" and n.get("idxname"):
            self.created_indexes.add(n["idxname"])
        elif kind in (
            "ViewStmt",
            "CreateFunctionStmt",
            "CreateSeqStmt",
            "CreateEnumStmt",
            "CompositeTypeStmt",
            "CreateDomainStmt",
        ):
            for name in _created_names(kind, n):
                self.created_objects.add(name)
        elif kind == "AlterTableStmt":
            self._alter_table(n)
        for table, mode in statement_locks(st):
            if self.is_new(table):
                continue
            prev = self.segment.locks.get(table)
            if prev is None or prev[0] < mode:
                self.segment.locks[table] = (mode, st.line)
        if is_ddl(kind):
            self.segment.ddl = True
        target = dml_target(st)
        if target and not self.is_new(target):
            self.segment.dml.append((st, target))
        if kind == "AlterTableStmt":
            table = rel_name(n.get("relation"))
            if table and not self.is_new(table):
                self.segment.alters[table] = self.segment.alters.get(table, 0) + 1
        if not self.in_tx:
            self._end_segment(st.line)

    def _transaction(self, kind: str, line: int) -> None:
        if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
            if self.explicit_tx_line is None:
                if not self.transactional:
                    self._end_segment(line)
                self.explicit_tx_line = line
        elif kind in (
            "TRANS_STMT_COMMIT",
            "TRANS_STMT_ROLLBACK",
            "TRANS_STMT_COMMIT_PREPARED",
            "TRANS_STMT_PREPARE",
            "TRANS_STMT_ROLLBACK_PREPARED",
        ):
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

    def _record_columns(self, table: str, elts: list[Node]) -> None:
        cols = self.schema.tables.setdefault(base_name(table), {})
        for elt in elts or []:
            name, body = unwrap(elt)
            if name == "ColumnDef" and body.get("colname"):
                cols[body["colname"]] = _column(body)
            elif name == "Constraint":
                self._record_constraint(table, body, validated=True)

    def _record_constraint(self, table: str, con: Node, validated: bool) -> None:
        contype = con.get("contype", "")
        cols: tuple[str, ...] = ()
        if contype == "CONSTR_CHECK":
            cols = tuple(_not_null_columns(con.get("raw_expr")))
        elif contype in ("CONSTR_NOTNULL", "CONSTR_PRIMARY"):
            cols = tuple(strings(con.get("keys")))
        name = con.get("conname")
        if name:
            self.constraints[name] = (table, contype, cols)
            if not validated:
                self.not_valid.add(name)
        if validated:
            for col in cols:
                self.notnull_checks.add((base_name(table), col))

    def _alter_table(self, n: Node) -> None:
        table = rel_name(n.get("relation"))
        if not table:
            return
        cols = self.schema.tables.get(base_name(table))
        for cmd in n.get("cmds", []):
            _, c = unwrap(cmd)
            sub = c.get("subtype", "")
            dname, d = unwrap(c.get("def"))
            if sub == "AT_AddColumn" and dname == "ColumnDef" and cols is not None:
                cols[d.get("colname", "")] = _column(d)
            elif sub == "AT_DropColumn" and cols is not None:
                cols.pop(c.get("name", ""), None)
            elif sub == "AT_AlterColumnType" and dname == "ColumnDef" and cols is not None:
                col = cols.get(c.get("name", ""))
                if col is not None:
                    col.type = type_info(d.get("typeName"))
            elif sub == "AT_AddConstraint" and dname == "Constraint":
                self._record_constraint(table, d, validated=not d.get("skip_validation"))
            elif sub == "AT_ValidateConstraint":
                name = c.get("name", "")
                known = self.constraints.get(name)
                self.not_valid.discard(name)
                if known:
                    for proven in known[2]:
                        self.notnull_checks.add((base_name(known[0]), proven))


def _zero(args: list[Node] | None) -> bool:
    for a in args or []:
        kind, body = unwrap(a)
        if kind == "A_Const":
            if "ival" in body:
                return int((body.get("ival") or {}).get("ival", 0)) == 0
            sval = (body.get("sval") or {}).get("sval", "")
            return sval.strip() in ("0", "0s", "0ms", "")
    return False


def _column(column_def: Node) -> Column:
    generated = ""
    for con in constraints(column_def):
        if con.get("contype") == "CONSTR_GENERATED":
            generated = con.get("generated_kind", "s")
    return Column(type_info(column_def.get("typeName")), generated)


def _not_null_columns(expr: Node | None) -> list[str]:
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
            out.extend(_not_null_columns(a))
        return out
    return []


def _created_names(kind: str, n: Node) -> list[str]:
    if kind == "ViewStmt":
        name = rel_name(n.get("view"))
        return [base_name(name)] if name else []
    if kind == "CreateFunctionStmt":
        return strings(n.get("funcname"))[-1:]
    if kind == "CreateSeqStmt":
        name = rel_name(n.get("sequence"))
        return [base_name(name)] if name else []
    if kind in ("CreateEnumStmt",):
        return strings(n.get("typeName"))[-1:]
    if kind == "CompositeTypeStmt":
        name = rel_name(n.get("typevar"))
        return [base_name(name)] if name else []
    if kind == "CreateDomainStmt":
        return strings(n.get("domainname"))[-1:]
    return []


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
    if kind == "VacuumStmt" and "full" in def_elem_names(n.get("options")):
        out = []
        for r in n.get("rels", []):
            _, vr = unwrap(r)
            t = rel_name(vr.get("relation"))
            if t:
                out.append((t, ACCESS_EXCLUSIVE))
        return out
    if kind == "ReindexStmt" and "concurrently" not in def_elem_names(n.get("params")):
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
