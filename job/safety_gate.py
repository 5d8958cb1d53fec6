"""Glue between the pipeline and the safety analyser (``job.safety``).

The analyser knows rules and findings; this module feeds it the pending migrations with a
model of the target (its catalog), a data probe and the server's version, decides what `run`
stops with and keeps the logs bounded. (``plan`` output is formatted by ``job.views``.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from job.migrations import Migration
    from job.settings import Settings


# What a single log line may carry of findings (CONTRACT: no line over 16 KiB; the rest is
# counted, and `plan --json` has everything).
SUMMARY_BUDGET = 8000
MESSAGE_LIMIT = 600


def evaluate(settings: Settings, pending: Sequence[Migration],
             conn: psycopg.Connection[Any] | None, log: Any) -> dict[str, Any]:
    """Analyse the pending migrations as one run, over a model of the target database.

    Returns the `migrate-job.safety/v1` report (plus `blocking`, and statement counts per
    migration for the plan). Info findings are logged at debug level only; blocking ones at
    error level; one `safety.summary` line counts everything by rule."""
    from job import safety
    from job.errors import ConfigError
    from job.safety.stats import PgCatalog, PgProbe, PgStats

    def read(path: str, mid: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable: {exc}", migration=mid, file=path) from None

    files = []
    for m in pending:
        if not m.path.endswith(".sql"):
            continue
        # The migration's own text and parse: the applier and `plan` use the same ones.
        files.append(safety.SqlFile(id=m.id, path=m.path, text=m.text(),
                                    transactional=m.transactional, parsed=m.parsed()))
        if m.verify_path:  # read-only or refused (VF01); it runs inside a transaction
            files.append(safety.SqlFile(id=f"{m.id}.verify", path=m.verify_path,
                                        text=read(m.verify_path, m.id), transactional=True))
    try:
        config = safety.load_config(settings.config_dir)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    connected = conn is not None and bool(files)
    probe = PgProbe(conn) if connected else None
    report = safety.analyze(
        files,
        server_version_num=conn.info.server_version if conn is not None else None,
        stats=PgStats(conn) if connected else None,
        config=config,
        allow_destructive=settings.allow_destructive,
        catalog=PgCatalog(conn) if connected else None,
        probe=probe,
        lock_timeout=settings.lock_timeout,
        statement_timeout=settings.statement_timeout,
    )
    data = report.to_json()
    data["blocking"] = [f.to_json() for f in report.blocking()]
    data["statements_by_migration"] = dict(report.statements_by_migration)
    data["duration_s"] = round(report.duration_s, 4)
    findings = data["findings"]
    if settings.allow_destructive:
        flag = "MIGRATE_ALLOW_DESTRUCTIVE"
        approved_by_flag = [f for f in findings if str(f.get("approved_by", "")).startswith(flag)]
        if approved_by_flag:
            log.warning("safety.allow_destructive", count=len(approved_by_flag),
                        rules=sorted({f["rule"] for f in approved_by_flag}),
                        message="MIGRATE_ALLOW_DESTRUCTIVE=true approves every destructive "
                                "finding of this deploy")
    for f in findings:
        fields = {k: f.get(k) for k in ("rule", "severity", "migration", "path", "line",
                                        "approved_by", "blocking", "data")}
        fields["message"] = clip(str(f.get("message", "")), MESSAGE_LIMIT)
        if f["blocking"]:
            log.error("safety.finding", **fields)
        elif f.get("approved_by") and f["category"] == "data-loss":
            log.warning("safety.finding", **fields)
        elif f["severity"] == "info":
            log.debug("safety.finding", **fields)
        else:
            log.info("safety.finding", **fields)
    for st in data["stale_approvals"]:
        log.warning("safety.stale_approval", **st)
    summary = data["summary"]
    log.info("safety.summary", migrations=len(files), statements=report.statements,
             findings=summary["findings"], blocking=summary["blocking"],
             approved=summary["approved"],
             by_severity={k: summary[k] for k in ("error", "warning", "info")},
             by_rule=summary["by_rule"], pg_version=report.pg_version,
             probes=probe.probes if probe else 0, duration_s=data["duration_s"])
    return data


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_view(safety: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int], int]:
    """What `migrate.summary` carries: blocking and approved findings in full (as far as they
    fit a bounded budget), every other finding as a count by rule, and how many were left out."""
    keep: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    omitted = 0
    used = 0
    for f in safety.get("findings", []):
        if not (f.get("blocking") or f.get("approved_by")):
            counts[f["rule"]] = counts.get(f["rule"], 0) + 1
            continue
        item = {k: f.get(k) for k in ("rule", "name", "severity", "migration", "path", "line",
                                      "blocking", "approved_by", "table", "data")}
        item["message"] = clip(str(f.get("message", "")), MESSAGE_LIMIT)
        size = len(json.dumps(item, default=str))
        if used + size > SUMMARY_BUDGET:
            omitted += 1
            continue
        used += size
        keep.append(item)
    return keep, dict(sorted(counts.items())), omitted


def refusal(safety: dict[str, Any], transactional: dict[str, bool],
            plan: bool = False) -> Exception | None:
    """The error `run` stops with (before anything runs), or None when the gate lets it pass.

    Transaction control in a transactional migration is a configuration error (exit 2), never
    approvable: it would commit half of the migration and leave it unrecorded. The others are
    safety refusals (exit 6) whose message says what releases them."""
    from job.console import approval_line
    from job.errors import ConfigError, SafetyRefusal

    prefix = "run would refuse: " if plan else ""
    for f in safety.get("findings", []):
        if (f["rule"] == "TX02" and transactional.get(f["migration"])
                and not f["path"].endswith(".rollback.sql")):
            stmt = " ".join(str(f.get("statement") or "").split()) or "transaction control"
            return ConfigError(
                f"{prefix}transaction control in a transactional migration: `{clip(stmt, 80)}` "
                f"at {f['path']}:{f['line']} would end the transaction migrate-job runs "
                f"{f['migration']} in, committing part of it with no record. Nothing was "
                "changed. Remove it, or make the migration `-- transactional: false` and manage "
                "its transactions yourself.",
                migration=f["migration"], file=f["path"], line=f["line"])
    blocking = safety.get("blocking", [])
    if not blocking:
        return None
    first = blocking[0]
    where = f"{first['path']}:{first['line']}"
    if first["rule"] == "AN01":
        detail = str(first["message"]).split(": ", 2)[-1]
        head = f"syntax error at {where}: {detail}"
        release = ("Fix the SQL (approve AN01 in the file only if the target server accepts "
                   "it).")
    elif first["rule"] == "AN02":
        head = f"psql meta-command at {where}: {first['message']}"
        release = "Remove it: migrations are sent to the server, not to psql."
    elif first["category"] == "data-loss":
        head = f"unapproved data-loss finding {first['rule']} at {where}: {first['message']}"
        release = (f"To approve after review, add `{approval_line(first['rule'])}` to "
                   f"{first['path']} or set MIGRATE_ALLOW_DESTRUCTIVE=true for this deploy.")
    else:
        head = f"{first['rule']} at {where}: {first['message']}"
        release = (f"Fix it, or after review add `{approval_line(first['rule'])}` to "
                   f"{first['path']}.")
    more = f" ({len(blocking)} blocking findings in all; `migrate-job plan` lists them)" if len(
        blocking) > 1 else ""
    compact = [{k: f.get(k) for k in ("rule", "migration", "path", "line", "data")}
               for f in blocking[:20]]
    if first["rule"] in ("AN01", "AN02"):
        text = f"{prefix}{clip(head, 1000)}{more}. Nothing was changed. {release}"
    else:
        # The way out first: a refusal is read in a narrow CI log pane.
        text = f"{prefix}{release} Nothing was changed: {clip(head, 1000)}{more}."
    return SafetyRefusal(text,
                         blocking=compact, blocking_total=len(blocking))
