"""Glue between the pipeline and the safety analyser (``job.safety``).

The analyser knows rules and findings; this module feeds it the pending migrations with the
server's version and table sizes, and formats the ``plan`` output.
"""

from __future__ import annotations

import dataclasses
import json
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

    files = []
    for m in pending:
        if m.path.endswith(".sql"):
            files.append(safety.SqlFile(id=m.id, path=m.path, text=Path(m.path).read_text(
                encoding="utf-8"), transactional=m.transactional))
        if m.verify_path:  # read-only or refused (VF01); it runs inside a transaction
            files.append(safety.SqlFile(id=f"{m.id}.verify", path=m.verify_path, text=Path(
                m.verify_path).read_text(encoding="utf-8"), transactional=True))
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


def render_plan(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    safety = data.get("safety") or {}
    findings = safety.get("findings", [])
    blocking = {(f["rule"], f["migration"], f["line"]) for f in safety.get("blocking", [])}
    if fmt == "markdown":
        lines = ["### migrate-job plan", ""]
        if not data["pending"]:
            lines.append("Nothing pending.")
        else:
            lines += ["| migration | transactional | statements | rollback |", "|---|---|---|---|"]
            lines += [f"| `{p['id']}`{' + verify' if p.get('verify') else ''} | "
                      f"{p['transactional']} | {p['statements']} | "
                      f"{'yes' if p['has_rollback'] else 'no'} |" for p in data["pending"]]
        if findings:
            lines += ["", "| | rule | migration | line | finding |", "|---|---|---|---|---|"]
            for f in findings:
                icon = "⛔" if (f["rule"], f["migration"], f["line"]) in blocking else "⚠️"
                msg = str(f["message"]).replace("|", "\\|")
                lines.append(f"| {icon} | {f['rule']} | `{f['migration']}` | {f['line']} | {msg} |")
        return "\n".join(lines) + "\n"
    lines = []
    for c in data["changed"]:
        lines.append(f"CHANGED  {c['id']} ({c['file']}): run would refuse (exit 5)")
    if not data["pending"]:
        lines.append("nothing pending")
    for p in data["pending"]:
        tx = "transactional" if p["transactional"] else "NON-transactional"
        verify = f", verify: {p['verify']}" if p.get("verify") else ""
        lines.append(f"would apply  {p['id']}  ({p['statements']} statement(s), {tx}{verify})")
    for f in findings:
        tag = "BLOCKING" if (f["rule"], f["migration"], f["line"]) in blocking else f["severity"]
        approved = f" [approved: {f['approved_by']}]" if f.get("approved_by") else ""
        lines.append(f"  {tag:8} {f['rule']} {f['path']}:{f['line']}: {f['message']}{approved}")
    if data["post_apply"] and data["pending"]:
        lines.append("then post-apply hooks: " + ", ".join(data["post_apply"]))
    return "\n".join(lines)
