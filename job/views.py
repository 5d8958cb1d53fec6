"""What ``status`` and ``plan`` print on stdout: text for a person, JSON or Markdown for tools.

Pure functions over the commands' data dictionaries (``Plan.as_dict()`` plus a few keys), so
they are tested without a database.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from typing import Any

from job.console import MAX_WIDTH, approval_line, clip


def stdout_width() -> int:
    """The terminal's width when stdout is one (at most 160), else 160."""
    import sys

    from job.console import terminal_width

    return terminal_width() if sys.stdout.isatty() else MAX_WIDTH


# -- status --------------------------------------------------------------------------------------
def status_text(data: Mapping[str, Any], width: int = MAX_WIDTH) -> str:
    """A table with a header (the time zone named), columns aligned to the longest id."""
    changed = {c["id"] for c in data.get("changed", [])}
    unknown = set(data.get("unknown", []))
    unverified = set(data.get("unverified", []))
    rows: list[tuple[str, str, str, str]] = []
    for a in data.get("applied", []):
        mid = a["id"]
        state = ("CHANGED" if mid in changed else "UNKNOWN" if mid in unknown
                 else "applied*" if mid in unverified else "applied")
        when = str(a.get("applied_at_utc") or "")[:19].replace("T", " ")
        note = ("file differs from what was applied" if mid in changed
                else "not in this image's migrations" if mid in unknown
                else "no recorded checksum" if mid in unverified
                else str(a.get("how") or ""))
        rows.append((state, mid, when or "-", note))
    for p in data.get("pending", []):
        note = f"phase {p.get('phase') or 'pre'}" + (
            "" if p.get("transactional", True) else ", non-transactional")
        rows.append(("pending", p["id"], "-", note))
    lines = [f"database    {data.get('database') or '-'}",
             f"migrations  {data.get('migrations_dir') or '-'}", ""]
    if rows:
        w = min(max(len("MIGRATION"), *(len(r[1]) for r in rows)), 100)
        lines.append(f"{'STATE':<9} {'MIGRATION':<{w}}  {'APPLIED AT (UTC)':<19}  NOTE")
        for state, mid, when, note in rows:
            lines.append(f"{state:<9} {clip(mid, w):<{w}}  {when:<19}  {note}".rstrip())
        if unverified:
            lines.append("")
            lines.append("* applied without a recorded checksum (e.g. by the yoyo CLI); the "
                         "next `run` records it")
    else:
        lines.append("no migrations found and none applied")
    invalid = data.get("invalid_indexes") or []
    if invalid:
        lines.append("")
    for i in invalid:
        owner = f"built by {i['migration']} ({i['state']})" if i.get("migration") else i["state"]
        lines.append(f"INVALID index {i['index']} on {i['table']}: {owner}")
        if i.get("fix"):
            lines.append(f"  fix: {i['fix']}")
    lines.append("")
    lines.append(f"{len(data.get('applied', []))} applied, {len(data.get('pending', []))} "
                 f"pending, {len(changed)} changed, {len(unknown)} unknown"
                 + (f", {len(invalid)} INVALID index(es)" if invalid else ""))
    return "\n".join(clip(line, width) for line in lines)


# -- plan ----------------------------------------------------------------------------------------
def render_plan(data: dict[str, Any], fmt: str, *, verbose: bool = False,
                width: int = MAX_WIDTH) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, default=str)
    if fmt == "markdown":
        return _plan_markdown(data)
    return _plan_text(data, verbose=verbose, width=width)


def _key(f: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return f.get("rule"), f.get("migration"), f.get("line")


def _plan_text(data: dict[str, Any], *, verbose: bool, width: int) -> str:
    safety = data.get("safety") or {}
    findings = safety.get("findings", [])
    blocking = {_key(f) for f in safety.get("blocking", [])}
    by_migration: dict[Any, list[Mapping[str, Any]]] = {}
    for f in findings:  # once, not once per pending migration
        by_migration.setdefault(f.get("migration"), []).append(f)
    pending = data.get("pending", [])
    lines = [
        f"plan for    {data.get('database') or '-'}",
        f"phase       {data.get('phase') or 'all'}",
        f"backup      {_backup_text(data.get('backup'))}",
        f"migrations  {data.get('migrations_dir') or '-'}: {len(data.get('applied', []))} "
        f"applied, {len(pending)} pending",
    ]
    for c in data.get("changed", []):
        lines.append(f"CHANGED     {c['id']} ({c['file']}): run would refuse (exit 5)")
    if not pending:
        lines += ["", "nothing pending: `run` would change nothing"]
    for p in pending:
        tx = "transactional" if p.get("transactional", True) else "NON-transactional"
        n = p.get("statements", 0)
        rb = "rollback script" if p.get("has_rollback") else "no rollback script"
        phase = f"{p['phase']}, " if p.get("phase") else ""
        lines += ["", f"would apply {p['id']}  ({phase}{tx}, {n} statement{'s' if n != 1 else ''}"
                      f", {rb})", f"  file      {p.get('file')}"]
        if p.get("verify"):
            lines.append(f"  verify    {p['verify']} (runs right after, in its transaction)")
        for st in p.get("sql") or []:
            lines += _statement_lines(st, verbose, width)
        # The gate orders findings by file: a migration's, then its verify script's.
        mine = [*by_migration.get(p["id"], []), *by_migration.get(f"{p['id']}.verify", [])]
        for f in mine:
            lines += _finding_lines(f, _key(f) in blocking, width)
    if data.get("post_apply") and pending:
        lines += ["", "then post-apply hooks: " + ", ".join(data["post_apply"])]
    lines.append("")
    if blocking:
        lines.append(f"run would refuse: {len(blocking)} unapproved dangerous finding(s) "
                     "(exit 6); add the approval lines above after review")
    elif data.get("changed"):
        lines.append("run would refuse: applied file(s) changed (exit 5)")
    elif pending:
        lines.append(f"run would apply {len(pending)} migration(s)")
    return "\n".join(lines)


def _backup_text(backup: Any) -> str:
    if not backup or backup == "none":
        return "none (set MIGRATE_BACKUP or --backup to take one before applying)"
    return f"{backup}, taken before applying and verified"


def _statement_lines(st: Mapping[str, Any], verbose: bool, width: int) -> list[str]:
    where = f"line {st.get('line')}" if st.get("line") else "        "
    text = str(st.get("text") or "")
    if not verbose:
        return [clip(f"  {where:<9} {' '.join(text.split())}", min(width, 120))]
    body = text.strip("\n").splitlines() or [""]
    out = [f"  {where:<9} {body[0].rstrip()}"]
    out += [f"            {line.rstrip()}" for line in body[1:]]
    return out


def _finding_lines(f: Mapping[str, Any], is_blocking: bool, width: int) -> list[str]:
    if f.get("approved_by"):
        tag, note = "approved", f"approved: {f['approved_by']}"
    elif is_blocking:
        tag, note = "BLOCKING", None
    else:
        tag, note = str(f.get("severity") or "info"), None
    head = f"  {tag:<9} {f.get('rule')} line {f.get('line')}: {f.get('message')}"
    out = textwrap.wrap(head, width, subsequent_indent=" " * 12, break_on_hyphens=False)
    if is_blocking:
        out.append(clip(f"            approve after review: add  {approval_line(str(f['rule']))}"
                        f"  to {f.get('path')}", width))
        if f.get("safe_alternative"):
            out += textwrap.wrap(f"            or: {f['safe_alternative']}", width,
                                 subsequent_indent=" " * 16, break_on_hyphens=False)
    elif note:
        out.append(clip(f"            {note}", width))
    return out


def _plan_markdown(data: dict[str, Any]) -> str:
    safety = data.get("safety") or {}
    findings = safety.get("findings", [])
    blocking = {_key(f) for f in safety.get("blocking", [])}
    lines = ["### migrate-job plan", "",
             f"Database `{data.get('database') or '-'}` · phase `{data.get('phase') or 'all'}` · "
             f"backup `{data.get('backup') or 'none'}`", ""]
    if not data["pending"]:
        lines.append("Nothing pending.")
    else:
        lines += ["| migration | transactional | statements | rollback |", "|---|---|---|---|"]
        lines += [f"| `{p['id']}` | {p['transactional']} | {p['statements']} | "
                  f"{'yes' if p['has_rollback'] else 'no'} |" for p in data["pending"]]
    if findings:
        lines += ["", "| | rule | migration | line | finding |", "|---|---|---|---|---|"]
        for f in findings:
            icon = "⛔" if _key(f) in blocking else "⚠️"
            msg = str(f["message"]).replace("|", "\\|")
            lines.append(f"| {icon} | {f['rule']} | `{f['migration']}` | {f['line']} | {msg} |")
        if blocking:
            lines += ["", "Approve a finding after review by adding to its file:", "",
                      "```sql"]
            lines += sorted({approval_line(str(r)) for r, _, _ in blocking})
            lines += ["```"]
    return "\n".join(lines) + "\n"


def statements_of(m: Any) -> list[dict[str, Any]]:
    """A pending migration's statements for the plan: line and SQL (Python steps by name)."""
    out = []
    for step in m.exec_steps():
        if step.apply is None:
            continue
        text = step.apply if isinstance(step.apply, str) else (
            f"(Python) {getattr(step.apply, '__name__', 'callable')}")
        out.append({"line": step.line, "text": text.strip()})
    return out


def plan_extras(settings: Any, database: str | None) -> dict[str, Any]:
    """What ``plan`` adds to ``Plan.as_dict()``: the target, the phase, the backup setting."""
    return {
        "database": database,
        # The phase feature arrives separately; until then every migration is in "all".
        "phase": getattr(settings, "phase", "all"),
        "backup": settings.backup,
        "migrations_dir": settings.migrations_dir,
    }
