"""The run summary: the last log event, the Kubernetes termination message, the GitHub summary.

Every text that leaves here passes through ``redact``; the termination message is kept under
Kubernetes' 4 KiB limit by trimming lists, never by cutting JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from job import __version__, redact

TERMINATION_LIMIT = 4000
# Docker's json-file driver splits lines at 16 KiB; CloudWatch caps an event at 256 KiB.
LOG_LINE_LIMIT = 16 * 1024
# The summary is cut smartly first (lists keep their first items and a `*_total` count); the
# generic bound in job/log.py stays the safety net for every other event.
SUMMARY_LINE_LIMIT = 15000
# Never cut: what an alert or a person reads first.
ESSENTIAL = frozenset({"event", "level", "timestamp", "outcome", "exit_code", "command",
                       "database", "version", "migration", "file", "line", "sqlstate",
                       "truncated"})


@dataclass
class Summary:
    command: str
    database: str | None = None
    outcome: str = "success"
    exit_code: int = 0
    applied: list[dict[str, Any]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    backup: dict[str, Any] | None = None
    duration_s: float = 0.0
    message: str | None = None
    error: dict[str, Any] | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "command": self.command,
            "database": self.database,
            "applied": self.applied,
            "pending": self.pending,
            "backup": self.backup,
            "duration_s": round(self.duration_s, 3),
            "version": __version__,
        }
        if self.message:
            data["message"] = self.message
        if self.error:
            data["error"] = self.error
        if self.findings:
            # Dangerous findings (approved: the audit trail; unapproved: the refusal) in full,
            # every finding counted by rule: a 342-migration history's informational findings
            # made a 3.3 MB summary line. ``plan --json`` has every finding.
            dangerous = [{k: v for k, v in f.items() if v is not None}
                         for f in self.findings if f.get("blocking") or f.get("approved_by")]
            if dangerous:
                data["findings"] = dangerous
            counts: dict[str, int] = {}
            for f in self.findings:
                counts[str(f.get("rule"))] = counts.get(str(f.get("rule")), 0) + 1
            data["findings_by_rule"] = dict(sorted(counts.items()))
        data.update(self.extra)
        return redact.scrub_obj(data)


def fit_log_line(summary: dict[str, Any], limit: int = SUMMARY_LINE_LIMIT) -> dict[str, Any]:
    """The summary as one bounded log event: long lists keep their first items and say how
    many there were (`applied_total`, ...); `plan --json` and the run history have the rest."""
    if _size(summary) <= limit:
        return summary
    data = dict(summary)
    # The counts by rule last: a few bytes that say what the gate saw, where the long lists
    # of ids are what `plan --json` and the run history repeat anyway.
    for key in ("findings", "applied", "pending", "findings_by_rule"):
        items = data.get(key)
        if not items or _size(data) <= limit:
            continue
        total = len(items)
        keep = total
        while keep > 0 and _size(data) > limit:
            keep //= 2
            data[key] = (list(items)[:keep] if isinstance(items, list)
                         else dict(list(items.items())[:keep]))
            data[f"{key}_total"] = total
    if _size(data) > limit and data.get("error"):
        data["error"] = {k: data["error"].get(k) for k in
                         ("migration", "file", "line", "sqlstate", "blocking_total")
                         if k in data["error"]}
    if _size(data) > limit and data.get("message"):
        data["message"] = str(data["message"])[:2000]
    return data


def dedupe_error(message: str, details: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Each fact once: DETAIL/HINT live in their own fields, not also inside the message; the
    server's message stays in the message (what a person and the termination log read), not
    again as ``server_message``; empty fields are left out."""
    out = {k: v for k, v in details.items() if v is not None and v != [] and v != {}}
    for key, label in (("hint", " HINT: "), ("detail", " DETAIL: ")):
        if out.get(key) and f"{label}{out[key]}" in message:
            message = message.replace(f"{label}{out[key]}", "", 1)
    if out.get("server_message") and str(out["server_message"]) in message:
        del out["server_message"]
    return message, out


def bound(data: dict[str, Any], limit: int, *, hint: str | None = None) -> dict[str, Any]:
    """``data`` whose compact JSON fits in ``limit`` bytes, cutting long lists and strings
    (tightest last) and saying what was cut in ``truncated``. Keys in ESSENTIAL stay whole."""
    if _size(data) <= limit:
        return data
    for max_items, max_chars in ((50, 4000), (20, 1000), (5, 300), (2, 120), (1, 60), (0, 0)):
        cuts: list[str] = []
        out = {k: (v if k in ESSENTIAL else _cut(v, k, max_items, max_chars, cuts))
               for k, v in data.items()}
        if len(cuts) > 10:
            cuts = cuts[:10] + [f"and {len(cuts) - 10} more cuts"]
        out["truncated"] = cuts + ([hint] if hint else [])
        if _size(out) <= limit:
            return out
    # Only essential fields are left to blame; keep those alone.
    kept = {k: v for k, v in data.items() if k in ESSENTIAL}
    kept["truncated"] = ["every non-essential field (the event was too large)"]
    return kept


def _cut(value: Any, path: str, max_items: int, max_chars: int, cuts: list[str]) -> Any:
    if isinstance(value, str):
        if len(value) > max_chars:
            cuts.append(f"{path}: {len(value)} chars, first {max_chars} kept")
            return value[:max_chars] + ("…" if max_chars else "")
        return value
    if isinstance(value, dict):
        return {k: _cut(v, f"{path}.{k}", max_items, max_chars, cuts) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = list(value)
        if len(items) > max_items:
            cuts.append(f"{path}: {len(items)} items, first {max_items} kept")
            items = items[:max_items]
        return [_cut(v, f"{path}[{i}]", max_items, max_chars, cuts) for i, v in enumerate(items)]
    return value


def _size(data: Any) -> int:
    return len(json.dumps(data, default=str, separators=(",", ":")).encode())


def termination_json(summary: dict[str, Any]) -> str:
    """The summary as one JSON line under Kubernetes' 4 KiB termination-message limit."""
    data = bound(dict(summary), TERMINATION_LIMIT - 100,
                 hint="the full summary is the last log event (migrate.summary)")
    return json.dumps(data, default=str, separators=(",", ":"))


def write_termination_log(path: str | None, summary: dict[str, Any], log: Any) -> None:
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(termination_json(summary) + "\n")
    except OSError as exc:
        # Only written when configured or inside Kubernetes, so a failure is worth a warning.
        log.warning("summary.termination_log_unwritable", path=path, error=exc.strerror)


def markdown(summary: dict[str, Any]) -> str:
    ok = summary["exit_code"] == 0
    icon = "✅" if ok else "❌"
    lines = [
        f"### {icon} migrate-job {summary['command']}: {summary['outcome']} "
        f"(exit {summary['exit_code']})",
        "",
        "| | |",
        "|---|---|",
        f"| database | `{summary.get('database') or '-'}` |",
        f"| applied | {len(summary.get('applied') or [])} |",
        f"| pending | {len(summary.get('pending') or [])} |",
        f"| duration | {summary.get('duration_s', 0):.2f} s |",
    ]
    backup = summary.get("backup")
    if backup:
        lines.append(f"| backup | `{backup.get('uri')}` ({backup.get('bytes')} bytes, sha256 "
                     f"`{str(backup.get('sha256'))[:12]}…`) |")
    if summary.get("message"):
        lines.append(f"| message | {_md(summary['message'])} |")
    if summary.get("applied"):
        lines += ["", "| migration | duration |", "|---|---|"]
        lines += [f"| `{a['id']}` | {a.get('duration_s', 0):.3f} s |" for a in summary["applied"]]
    if summary.get("pending"):
        lines += ["", "Pending: " + ", ".join(f"`{p}`" for p in summary["pending"])]
    blocking = (summary.get("error") or {}).get("blocking") or []
    if blocking:
        lines += ["", "| rule | migration | line | message |", "|---|---|---|---|"]
        lines += [f"| {f.get('rule')} | `{f.get('migration')}` | {f.get('line')} | "
                  f"{_md(str(f.get('message')))} |" for f in blocking[:50]]
    counts = summary.get("findings_by_rule") or {}
    if counts:
        lines += ["", "Safety findings by rule: " + ", ".join(
            f"{rule} × {n}" for rule, n in counts.items())]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_github_summary(path: str | None, summary: dict[str, Any], log: Any) -> None:
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(redact.scrub(markdown(summary)))
    except OSError as exc:
        log.warning("summary.github_unwritable", path=path, error=exc.strerror)


def console(summary: dict[str, Any], *, width: int = 100) -> str:
    """A short human-readable summary block (``demo``, and every command on a terminal)."""
    from job.console import summary_block

    return summary_block(summary, width=width, with_message=True)


def notify(url: str | None, summary: dict[str, Any], log: Any, timeout: float = 5.0) -> None:
    """POST the outcome to a Slack/Teams-compatible webhook. Best effort: never changes the
    exit code, and the webhook URL (a secret) never appears in a log."""
    if not url:
        return
    import urllib.request

    ok = summary["exit_code"] == 0
    applied = [a["id"] for a in summary.get("applied") or []]
    text = (f"{'✅' if ok else '❌'} migrate-job {summary['command']} on "
            f"{summary.get('database') or 'an unknown database'}: {summary['outcome']} "
            f"(exit {summary['exit_code']})")
    if applied:
        text += f"; applied {len(applied)}: {', '.join(applied[:10])}"
    if summary.get("message"):
        text += f"; {summary['message']}"
    body = json.dumps({"text": redact.scrub(text), "migrate_job": summary},
                      default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            log.info("notify.sent", status=response.status)
    except Exception as exc:
        log.warning("notify.failed", error=redact.scrub(f"{type(exc).__name__}: {exc}"))
