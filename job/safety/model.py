"""Data the safety gate takes in and gives back. Standard library only: `run` imports this."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

SEVERITIES = ("error", "warning", "info")
CATEGORIES = (
    "data-loss",
    "blocking-lock",
    "table-rewrite",
    "backward-incompatible",
    "data-dependent",
    "transaction",
    "hygiene",
    "analysis",
)
JSON_SCHEMA_ID = "migrate-job.safety/v1"


@dataclass(frozen=True)
class SqlFile:
    id: str  # migration id (file stem)
    path: str  # file path for reporting
    text: str  # full file text (directives included)
    transactional: bool  # False when '-- transactional: false' (a rollback: its up file's mode)
    rollback: bool = False  # a *.rollback.sql script (run by `rollback`, in the up's mode)
    # The text already parsed (parser.ParsedFile), when the caller has it: `run` parses each
    # migration once and shares it with the applier and `plan`.
    parsed: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class DataSubject:
    """What a data-loss finding would destroy, named as it is in the database before the run,
    so a probe can ask whether there is anything to lose."""

    kind: str  # "rows": the table has a row; "values": the column holds a non-null value;
    #            "sequence": the sequence was used; "schema": a table in it has a row
    name: str  # schema.table, schema.sequence or schema
    column: str | None = None
    label: str = ""  # how the finding names it (the name as the migration writes it)
    tables: tuple[str, ...] = ()  # "schema": the tables it holds
    notnull: bool = False  # "values": the column is NOT NULL (a row means a value)


class DataProbe(Protocol):
    """Answers whether a data-loss finding can lose data: True (there is data), False (none),
    None (could not tell: no privilege, lock not granted in time, too slow). Implementations
    must be read-only and take at most ACCESS SHARE, never waiting long for it."""

    def has_data(self, subject: DataSubject) -> tuple[bool | None, str]: ...


@dataclass(frozen=True)
class Finding:
    rule: str
    name: str
    category: str
    severity: str  # "error" | "warning" | "info"
    migration: str
    path: str
    line: int
    message: str
    safe_alternative: str
    blocking: bool
    approved_by: str | None  # the approval's reason (or the deploy-wide switch), None if unapproved
    table: str | None = None  # relation whose size matters, when one does
    lock: str | None = None  # lock/rewrite the statement takes, from the catalogue
    rows: float | None = None  # pg_class.reltuples (None: unknown / never analysed)
    total_bytes: int | None = None  # pg_total_relation_size
    statement: str = ""  # the statement, shortened, for reviewers
    data: str | None = None  # data-loss only: "rows" (data can be lost), "empty", "unknown"
    subject: DataSubject | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "name": self.name,
            "category": self.category,
            "severity": self.severity,
            "migration": self.migration,
            "path": self.path,
            "line": self.line,
            "message": self.message,
            "safe_alternative": self.safe_alternative,
            "blocking": self.blocking,
            "approved_by": self.approved_by,
            "table": self.table,
            "lock": self.lock,
            "rows": self.rows,
            "total_bytes": self.total_bytes,
            "statement": self.statement,
            "data": self.data,
        }


@dataclass(frozen=True)
class Approval:
    """`-- migrate-job: approve DL02 "reason"` found in a migration file."""

    migration: str
    path: str
    line: int
    rule: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "migration": self.migration,
            "path": self.path,
            "line": self.line,
            "rule": self.rule,
            "reason": self.reason,
        }


@dataclass
class Report:
    findings: list[Finding]
    stale_approvals: list[Approval] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)  # approvals that matched a finding
    pg_version: int | None = None  # server_version_num used for version-gated rules
    pg_version_source: str = "assumed"  # "server" | "setting" | "assumed"
    files: int = 0
    statements: int = 0
    allow_destructive: bool = False
    statements_by_migration: dict[str, int] = field(default_factory=dict)  # ups only
    duration_s: float = 0.0  # time the analysis took (parse, rules, probes)

    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    def to_json(self) -> dict[str, Any]:
        """The stable, documented schema (docs/safety.md); only additive changes within v1."""
        counts = {s: 0 for s in SEVERITIES}
        by_rule: dict[str, int] = {}
        for f in self.findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
            by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
        return {
            "schema": JSON_SCHEMA_ID,
            "pg_version": self.pg_version,
            "pg_version_source": self.pg_version_source,
            "allow_destructive": self.allow_destructive,
            "files": self.files,
            "statements": self.statements,
            "summary": {
                **counts,
                "by_rule": dict(sorted(by_rule.items())),
                "findings": len(self.findings),
                "blocking": len(self.blocking()),
                "approved": sum(1 for f in self.findings if f.approved_by is not None),
                "stale_approvals": len(self.stale_approvals),
            },
            "findings": [f.to_json() for f in self.findings],
            "approvals": [a.to_json() for a in self.approvals],
            "stale_approvals": [a.to_json() for a in self.stale_approvals],
        }


@dataclass(frozen=True)
class TableStats:
    rows: float  # pg_class.reltuples; negative when the table was never analysed
    total_bytes: int  # pg_total_relation_size


class StatsProvider(Protocol):
    """Sizes of the tables a migration touches, so a finding can say how big the blast radius is.

    Implementations must be read-only and must not take locks stronger than ACCESS SHARE.
    Names are as the migration spells them after identifier folding: `table` or `schema.table`.
    Tables that do not exist (yet) are simply left out of the answer.
    """

    def table_stats(self, names: Sequence[str]) -> Mapping[str, TableStats]: ...


@dataclass(frozen=True)
class SafetyConfig:
    """Team policy from migrate-job.toml / [tool.migrate-job.safety] in pyproject.toml."""

    block: frozenset[str] = frozenset()  # rule ids promoted to blocking
    ignore: frozenset[str] = frozenset()  # rule ids silenced
    enable: frozenset[str] = frozenset()  # opt-in rules switched on
    pg_version: int | None = None  # server_version_num assumed by `lint` when not given
    max_index_columns: int = 3
    index_name_pattern: str | None = None
    constraint_name_pattern: str | None = None
    source: str | None = None  # the file the policy came from, for messages
