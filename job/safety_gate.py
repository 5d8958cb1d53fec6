"""Glue between the pipeline and the safety analyser (``job.safety``).

The analyser knows rules and findings; this module feeds it the pending migrations with the
server's version and table sizes. (``plan`` output is formatted by ``job.views``.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from job.migrations import Migration
    from job.settings import Settings


def evaluate(settings: Settings, pending: Sequence[Migration],
             conn: psycopg.Connection[Any] | None, log: Any) -> dict[str, Any] | None:
    from job import safety
    from job.safety.stats import PgStats

    files = [
        safety.SqlFile(id=m.id, path=m.path, text=Path(m.path).read_text(encoding="utf-8"),
                       transactional=m.transactional)
        for m in pending if m.path.endswith(".sql")
    ]
    if not files:
        return {"findings": [], "blocking": [], "stale_approvals": []}
    try:
        config = safety.load_config(settings.config_dir)
    except ValueError as exc:
        from job.errors import ConfigError

        raise ConfigError(str(exc)) from None
    report = safety.analyze(
        files,
        server_version_num=conn.info.server_version if conn is not None else None,
        stats=PgStats(conn) if conn is not None else None,
        config=config,
        allow_destructive=settings.allow_destructive,
    )
    findings = [_as_dict(f) for f in report.findings]
    blocking = [_as_dict(f) for f in report.blocking()]
    if settings.allow_destructive:
        flag = "MIGRATE_ALLOW_DESTRUCTIVE"
        approved_by_flag = [f for f in findings if str(f.get("approved_by", "")).startswith(flag)]
        if approved_by_flag:
            log.warning("safety.allow_destructive", count=len(approved_by_flag),
                        rules=sorted({f["rule"] for f in approved_by_flag}),
                        message="MIGRATE_ALLOW_DESTRUCTIVE=true approves every destructive "
                                "finding of this deploy")
    for f in findings:
        log.info("safety.finding", **{k: f.get(k) for k in
                                      ("rule", "severity", "migration", "line", "message",
                                       "approved_by")})
    stale = [_as_dict(s) for s in report.stale_approvals]
    for s in stale:
        log.warning("safety.stale_approval", **s)
    return {"findings": findings, "blocking": blocking, "stale_approvals": stale}


def _as_dict(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return obj
    return {"value": str(obj)}
