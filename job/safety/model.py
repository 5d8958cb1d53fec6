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
    transactional: bool  # False when '-- transactional: false'


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

    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocking]

    def to_json(self) -> dict[str, Any]:
        """The stable, documented schema (docs/safety.md); only additive changes within v1."""
        counts = {s: 0 for s in SEVERITIES}
        for f in self.findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
        return {
            "schema": JSON_SCHEMA_ID,
            "pg_version": self.pg_version,
            "pg_version_source": self.pg_version_source,
            "allow_destructive": self.allow_destructive,
            "files": self.files,
            "statements": self.statements,
            "summary": {
                **counts,
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
