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
# One log event stays under Docker's 16 KiB line split (CloudWatch caps an event at 256 KiB);
# the logger adds a timestamp and level around the fields.
LOG_LINE_LIMIT = 15000


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
            data["findings"] = self.findings
        data.update(self.extra)
        return redact.scrub_obj(data)


def _size(data: Any) -> int:
    return len(json.dumps(data, default=str, separators=(",", ":")).encode("utf-8"))


def fit_log_line(summary: dict[str, Any], limit: int = LOG_LINE_LIMIT) -> dict[str, Any]:
    """The summary as one bounded log event: long lists keep their first items and say how
    many there were (`applied_total`, ...); `plan --json` and the run history have the rest."""
    if _size(summary) <= limit:
        return summary
    data = dict(summary)
    for key in ("findings", "findings_by_rule", "applied", "pending"):
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


def termination_json(summary: dict[str, Any]) -> str:
    data = dict(summary)
    text = json.dumps(data, default=str, separators=(",", ":"))
    # Trim the longest lists first; the outcome, code and message always fit.
    for key in ("findings", "applied", "pending"):
        if len(text) <= TERMINATION_LIMIT:
            break
        items = data.get(key) or []
        if items:
            data[key] = items[:3]
            data[f"{key}_truncated"] = len(items)
            text = json.dumps(data, default=str, separators=(",", ":"))
    if len(text) > TERMINATION_LIMIT and data.get("error"):
        data["error"] = {k: data["error"].get(k) for k in ("migration", "file", "line", "sqlstate")}
        text = json.dumps(data, default=str, separators=(",", ":"))
    if len(text) > TERMINATION_LIMIT and data.get("message"):
        data["message"] = str(data["message"])[:1000]
        text = json.dumps(data, default=str, separators=(",", ":"))
    return text


def write_termination_log(path: str | None, summary: dict[str, Any], log: Any) -> None:
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(termination_json(summary) + "\n")
    except OSError as exc:
        # Outside Kubernetes /dev/termination-log usually does not exist: that is fine.
        if path != "/dev/termination-log":
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
    findings = summary.get("findings") or []
    if findings:
        lines += ["", "| rule | migration | line | message |", "|---|---|---|---|"]
        lines += [f"| {f.get('rule')} | `{f.get('migration')}` | {f.get('line')} | "
                  f"{_md(str(f.get('message')))} |" for f in findings[:50]]
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


def console(summary: dict[str, Any]) -> str:
    """A short human-readable summary (``demo``, and ``run`` on a terminal)."""
    lines = [f"migrate-job {summary['command']}: {summary['outcome']} (exit {summary['exit_code']})"
             f" on {summary.get('database')} in {summary.get('duration_s', 0):.2f}s"]
    for a in summary.get("applied") or []:
        lines.append(f"  applied  {a['id']}  ({a.get('duration_s', 0):.3f}s)")
    for p in summary.get("pending") or []:
        lines.append(f"  pending  {p}")
    if summary.get("backup"):
        b = summary["backup"]
        lines.append(f"  backup   {b.get('uri')} ({b.get('bytes')} bytes)")
    if summary.get("message"):
        lines.append(f"  {summary['message']}")
    return "\n".join(lines)


def notify(url: str | None, summary: dict[str, Any], log: Any, timeout: float = 5.0) -> None:
    """POST the outcome to a Slack/Teams-compatible webhook. Best effort: never changes the
    exit code, and the webhook URL (a secret) never appears in a log."""
    if not url:
        return
    import urllib.request

    ok = summary["exit_code"] == 0
    applied = [a["id"] for a in summary.get("applied") or []]
    text = (f"{'✅' if ok else '❌'} migrate-job {summary['command']} on "
            f"{summary.get('database')}: {summary['outcome']} (exit {summary['exit_code']})")
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
