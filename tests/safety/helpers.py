"""Small helpers shared by the safety tests."""

from __future__ import annotations

from job.safety import Report, SafetyConfig, SqlFile, analyze

ALL_OPT_IN = frozenset({"HY07"})


def run(
    sql: str,
    *,
    transactional: bool = True,
    pg: int | None = 18,
    prelude: str | None = None,
    config: SafetyConfig | None = None,
    allow_destructive: bool = False,
    path: str = "migrations/0002_case.sql",
) -> Report:
    """Analyse `sql` as migration 0002 on PostgreSQL `pg`; an optional 0001 `prelude` is
    assumed applied already (its tables exist in the target and may hold data)."""
    applied = []
    if prelude is not None:
        applied.append(SqlFile("0001_prelude", "migrations/0001_prelude.sql", prelude, True))
    files = [SqlFile("0002_case", path, sql, transactional)]
    return analyze(
        files,
        server_version_num=pg * 10000 + 1 if pg is not None else None,
        stats=None,
        config=config or SafetyConfig(enable=ALL_OPT_IN),
        allow_destructive=allow_destructive,
        applied=applied,
    )


def rules_fired(report: Report, migration: str = "0002_case") -> set[str]:
    return {f.rule for f in report.findings if f.migration == migration}
