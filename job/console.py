"""Log events rendered for a person at a terminal.

The JSON events are the source of truth (operators grep their names); this module renders the
same events for a person: one short line per thing that happened (``applying 0002_orders ... ok
(12 ms)``), a live progress line during long work on a terminal, errors as a short block that
starts with what to do next, and a summary block at the end. No Python reprs, no key=value walls,
no line wider than the terminal (at most 160 characters).

Events a person does not need (``lock.held``, ``backup.preflight``, ...) are left to the JSON
output; an event this module does not know is still shown, compactly, so a new event added
elsewhere never disappears.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

MAX_WIDTH = 160
HIDDEN = frozenset({
    "lock.held", "backup.preflight", "backup.uploaded", "run.verified", "notify.sent",
    "restore.verified", "migration.skipped",
    # Routine bookkeeping a person need not read (the JSON log keeps them).
    "schema.recorded", "schema.unchanged", "lock.yoyo_acquired", "environment.matches",
    "environment.unchanged", "adopt.schema_adopted", "rollback.plan", "undo.plan",
    "rollback.finding",  # listed in the refusal block
})
# Commands whose result is their stdout: no summary block (a failure still gets its error block).
READ_ONLY = frozenset({"status", "plan", "lint", "new"})

OUTCOMES = {
    "applied": "applied", "nothing_pending": "nothing pending", "success": "done",
    "pending": "pending migrations", "config_error": "configuration error",
    "database_unavailable": "database unreachable", "lock_timeout": "migration lock not acquired",
    "integrity_refused": "refused: integrity", "safety_refused": "refused by the safety gate",
    "backup_failed": "backup failed", "migration_failed": "migration failed",
    "verification_failed": "verification failed", "interrupted": "interrupted",
    "internal_error": "internal error (a bug)",
}


def terminal_width(stream: TextIO | None = None) -> int:
    columns = shutil.get_terminal_size((100, 24)).columns
    return max(40, min(MAX_WIDTH, columns))


# -- small formatting helpers ------------------------------------------------------------------
def duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "?"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def size(n: Any) -> str:
    try:
        value = float(n)
    except (TypeError, ValueError):
        return "?"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def listing(items: Sequence[Any], limit: int = 5) -> str:
    shown = [str(i) for i in items[:limit]]
    more = len(items) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def value_text(value: Any) -> str:
    """A value as a person reads it: no quotes, no braces, no None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {value_text(v)}" for k, v in value.items()
                         if v is not None and v != "")
    if isinstance(value, (list, tuple)):
        return listing([value_text(v) for v in value])
    return " ".join(str(value).split())


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def approval_line(rule: str) -> str:
    return f'-- migrate-job: approve {rule} "reason"'


def blocker_text(blockers: Any) -> str:
    parts = []
    for b in blockers or []:
        if not isinstance(b, Mapping):
            continue
        who = b.get("application_name") or "unnamed client"
        state = b.get("state") or "?"
        age = f", transaction open {duration(b['xact_age_s'])}" if b.get("xact_age_s") else ""
        parts.append(f"pid {b.get('pid')} ({who}, {state}{age})")
    return "; ".join(parts)


def progress_text(p: Any) -> str:
    """``building index: scanning table 45% (1,234 of 2,730 blocks)``."""
    if not isinstance(p, Mapping):
        return ""
    text = str(p.get("phase") or p.get("command") or "")
    if p.get("percent") is not None:
        text += f" {p['percent']:.0f}%"
    if p.get("done") is not None and p.get("total"):
        text += f" ({p['done']:,} of {p['total']:,} {p.get('unit') or ''})".replace(" )", ")")
    return text.strip()


# -- the structlog processor -------------------------------------------------------------------
class Console:
    """Final structlog processor: writes the event for a person and drops it.

    ``live``: the stream is a terminal, so a long step's line is rewritten in place (``\\r``)
    instead of growing new lines.
    """

    def __init__(self, stream: TextIO, *, live: bool, color: bool, debug: bool = False,
                 width: int | None = None) -> None:
        self.stream, self.live, self.color, self.debug = stream, live, color, debug
        self.width = width or (terminal_width(stream) if live else MAX_WIDTH)
        self._open: str | None = None  # key of an unfinished line (no newline written yet)
        self._open_text = ""
        # An unfinished line another event had to end (key, text): its outcome gets a line.
        self._dangling: tuple[str, str] | None = None
        self._rewritten = False

    def __call__(self, _logger: Any, method: str, event: dict[str, Any]) -> Any:
        import structlog

        try:
            self.render(event, str(event.get("level") or method))
        except Exception as exc:  # a rendering bug must never cost the run; say so, briefly
            self._line(f"(could not render {event.get('event')}: {type(exc).__name__})")
        raise structlog.DropEvent

    # -- writing ---------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _close(self) -> None:
        if self._open is not None:
            self._write("\n")
            self._dangling = (self._open, self._open_text)
            self._open = None

    def _line(self, text: str, indent: str = "") -> None:
        self._close()
        for line in self._wrap(text, indent):
            self._write(line + "\n")

    def _wrap(self, text: str, indent: str = "") -> list[str]:
        return textwrap.wrap(text, self.width, subsequent_indent=indent or "    ",
                             break_on_hyphens=False, break_long_words=True) or [""]

    def _begin(self, key: str, text: str) -> None:
        self._close()
        self._write(clip(text, self.width))
        self._open, self._open_text, self._rewritten = key, text, False
        self._dangling = None

    def _update(self, key: str, text: str) -> None:
        if self.live and self._open == key:
            self._write("\r\x1b[K" + clip(text, self.width - 1))
            self._rewritten = True
        else:
            self._line(text, "      ")

    def _finish(self, key: str, suffix: str, full: str) -> None:
        if self._open == key and not self._rewritten:
            self._write(suffix + "\n")
            self._open = None
        elif self._open == key and self.live:
            self._write("\r\x1b[K" + clip(full, self.width) + "\n")
            self._open = None
        else:
            self._line(full)
        if self._dangling is not None and self._dangling[0] == key:
            self._dangling = None

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def ok(self) -> str:
        return self._paint("ok", "32")

    def warn(self, text: str) -> None:
        self._line(self._paint("warning:", "33") + " " + text)

    # -- events ----------------------------------------------------------------------------
    def render(self, ev: dict[str, Any], level: str) -> None:
        name = str(ev.get("event"))
        if name in HIDDEN:
            return
        handler = _HANDLERS.get(name)
        if handler is None:
            for suffix, h in _SUFFIX_HANDLERS:
                if name.endswith(suffix):
                    handler = h
                    break
        if handler is not None:
            handler(self, ev)
            return
        self.generic(name, ev, level)

    def generic(self, name: str, ev: Mapping[str, Any], level: str) -> None:
        """An event without a handler: its message when it has one, else one clipped line of
        its fields (the JSON log has them all)."""
        if ev.get("message"):
            text = clip(value_text(ev["message"]), self.width * 2)
        else:
            fields = [f"{k} {value_text(v)}" for k, v in ev.items()
                      if k not in ("event", "level", "timestamp") and value_text(v)]
            text = clip(f"{name}: " + "; ".join(fields) if fields else name, self.width - 10)
        if level in ("error", "critical"):
            self._line(self._paint("error:", "31") + " " + text)
        elif level == "warning":
            self.warn(text)
        else:
            self._line(text)


# -- handlers ----------------------------------------------------------------------------------
Handler = Callable[[Console, dict[str, Any]], None]


def _migration_start(c: Console, ev: dict[str, Any]) -> None:
    tx = "" if ev.get("transactional", True) else " (non-transactional)"
    c._begin(f"m:{ev.get('migration')}", f"applying {ev.get('migration')}{tx} ...")


def _migration_applied(c: Console, ev: dict[str, Any]) -> None:
    mid, took = ev.get("migration"), duration(ev.get("duration_s"))
    c._finish(f"m:{mid}", f" {c.ok()} ({took})", f"applying {mid} ... {c.ok()} ({took})")


def _heartbeat(c: Console, ev: dict[str, Any]) -> None:
    mid = ev.get("migration")
    parts = [f"{duration(ev.get('elapsed_s'))}"]
    prog = progress_text(ev.get("progress"))
    if prog:
        parts.append(prog)
    if ev.get("wait_event"):
        parts.append(f"waiting on {ev['wait_event']}")
    if ev.get("blocked_by"):
        parts.append("blocked by " + blocker_text(ev["blocked_by"]))
    if c.live and c._open == f"m:{mid}":
        c._update(f"m:{mid}", f"applying {mid} ... " + ", ".join(parts))
    else:
        c._line(f"  {mid} still running: " + ", ".join(parts), "      ")


def _lock_retry(c: Console, ev: dict[str, Any]) -> None:
    who = blocker_text(ev.get("blockers"))
    c.warn(f"{ev.get('migration')} waited {duration(ev.get('lock_timeout_s'))} for a lock "
           f"(lock_timeout){'; blocked by ' + who if who else ''}; retry {ev.get('attempt')} of "
           f"{ev.get('of')} in {duration(ev.get('retry_in_s'))}")


def _hook_start(c: Console, ev: dict[str, Any]) -> None:
    c._begin(f"h:{ev.get('hook')}", f"running post-apply hook {ev.get('hook')} ...")


def _hook_done(c: Console, ev: dict[str, Any]) -> None:
    c._finish(f"h:{ev.get('hook')}", f" {c.ok()}",
              f"running post-apply hook {ev.get('hook')} ... {c.ok()}")


def _rollback_start(c: Console, ev: dict[str, Any]) -> None:
    c._begin(f"r:{ev.get('migration')}", f"rolling back {ev.get('migration')} ...")


def _rollback_done(c: Console, ev: dict[str, Any]) -> None:
    mid, took = ev.get("migration"), duration(ev.get("duration_s"))
    c._finish(f"r:{mid}", f" {c.ok()} ({took})", f"rolling back {mid} ... {c.ok()} ({took})")


def _run_plan(c: Console, ev: dict[str, Any]) -> None:
    pending = list(ev.get("pending") or [])
    c._line(f"{len(pending)} pending: {listing(pending)}")


def _nothing_pending(c: Console, ev: dict[str, Any]) -> None:
    c._line(f"nothing pending ({ev.get('applied', 0)} applied)")


def _lock_waiting(c: Console, ev: dict[str, Any]) -> None:
    holder = ev.get("holder") or {}
    who = (f"pid {holder.get('pid')} ({holder.get('application_name') or 'unnamed'}, "
           f"{holder.get('client_addr')}, since {holder.get('since')})") if holder else "?"
    c._line(f"waiting for the migration lock held by {who}; gives up in "
            f"{duration(ev.get('remaining_s'))}")


def _db_waiting(c: Console, ev: dict[str, Any]) -> None:
    c._line(f"waiting for the database {ev.get('database')} (attempt {ev.get('attempt')}, "
            f"retry in {duration(ev.get('retry_in_s'))}): {value_text(ev.get('error'))}")


def _db_connected(c: Console, ev: dict[str, Any]) -> None:
    c._line(f"connected to {ev.get('database')} (attempt {ev.get('attempt')})")


def _finding(c: Console, ev: dict[str, Any]) -> None:
    where = f"{ev.get('migration')}:{ev.get('line')}"
    if ev.get("blocking"):
        return  # shown once, in the refusal's error block
    if ev.get("approved_by"):
        c._line(f"approved {ev.get('rule')} in {where}: {value_text(ev.get('approved_by'))}")
    elif ev.get("severity") == "warning":
        # Blocking ("error") findings are shown once, in the refusal's error block.
        c.warn(f"{ev.get('rule')} {where}: {value_text(ev.get('message'))}")


def _backup_started(c: Console, ev: dict[str, Any]) -> None:
    c._begin("backup", f"backing up to {ev.get('uri')} ...")


def _transfer_progress(key: str, verb: str) -> Handler:
    def handler(c: Console, ev: dict[str, Any]) -> None:
        parts = [size(ev.get("bytes"))]
        if ev.get("percent") is not None:
            parts.append(f"{ev['percent']:.0f}% of {size(ev.get('total_bytes'))}"
                         + (" (estimate)" if key == "backup" else ""))
        if ev.get("mb_per_s") is not None:
            parts.append(f"{ev['mb_per_s']:g} MB/s")
        if ev.get("eta_s") is not None:
            parts.append(f"ETA {duration(ev['eta_s'])}")
        text = f"{verb} ... " + ", ".join(parts)
        if c.live and c._open == key:
            c._update(key, text)
        else:
            c._line("  " + text, "      ")
    return handler


def _backup_verified(c: Console, ev: dict[str, Any]) -> None:
    full = (f"backup {ev.get('uri')} ... {c.ok()} ({size(ev.get('bytes'))}, verified: "
            f"{ev.get('verify')}, {duration(ev.get('duration_s'))})")
    c._finish("backup", f" {c.ok()} ({size(ev.get('bytes'))}, verified: {ev.get('verify')}, "
              f"{duration(ev.get('duration_s'))})", full)


def _restore_started(c: Console, ev: dict[str, Any]) -> None:
    c._begin("restore", f"restoring {ev.get('uri')} into {ev.get('database')} ...")


def _restore_completed(c: Console, ev: dict[str, Any]) -> None:
    took = duration(ev.get("duration_s"))
    c._finish("restore", f" {c.ok()} ({size(ev.get('bytes'))}, {took})",
              f"restored {ev.get('uri')} ... {c.ok()} ({size(ev.get('bytes'))}, {took})")


def _simple(template: str) -> Handler:
    def handler(c: Console, ev: dict[str, Any]) -> None:
        c._line(template.format_map(_Fields(ev)))
    return handler


def _safety_summary(c: Console, ev: dict[str, Any]) -> None:
    if not ev.get("findings"):
        return
    sev = ev.get("by_severity") or {}
    c._line(f"safety gate: {ev.get('findings')} finding(s) ({sev.get('error', 0)} error, "
            f"{sev.get('warning', 0)} warning, {sev.get('info', 0)} info), "
            f"{ev.get('blocking', 0)} blocking, {ev.get('approved', 0)} approved; "
            "`migrate-job plan` lists them")


def _warning_with_message(c: Console, ev: dict[str, Any]) -> None:
    c.warn(value_text(ev.get("message")) or str(ev.get("event")))


def _interrupted(c: Console, ev: dict[str, Any]) -> None:
    c.warn(f"interrupted by signal {ev.get('signal')}: the statement in flight was cancelled and "
           "rolled back; the lock is released")


def _failed(c: Console, ev: dict[str, Any]) -> None:
    steps = ("m:", "r:", "h:", "backup", "restore")
    if c._open is not None and c._open.startswith(steps):
        c._write(" " + c._paint("failed", "31") + "\n")
        c._open = None
    elif c._open is None and c._dangling is not None and c._dangling[0].startswith(steps):
        # Another event (the schema recording after a failed apply) ended the line first.
        c._write(clip(c._dangling[1], c.width) + " " + c._paint("failed", "31") + "\n")
    c._dangling = None
    c._close()
    c._write("\n")
    for line in error_block(ev, c.width, paint=c._paint):
        c._write(line + "\n")


def _internal_error(c: Console, ev: dict[str, Any]) -> None:
    c._close()
    lines = [c._paint("✗ internal error", "31") + " (a bug in migrate-job, exit 1)",
             "  next:   please report it with the output of the same command run with "
             "--log-level debug"]
    lines += [f"  {line}" for line in c._wrap(value_text(ev.get("error")), "          ")]
    if c.debug and ev.get("traceback"):
        lines += str(ev["traceback"]).rstrip().splitlines()
    for line in lines:
        c._write(line + "\n")


def _config_invalid(c: Console, ev: dict[str, Any]) -> None:
    c._close()
    problems = ev.get("problems") or [ev.get("error")]
    c._write(c._paint("✗ configuration error", "31") + " (exit 2): nothing was done\n")
    c._write("  next:   fix these settings (environment variable or flag), then run again\n")
    for p in problems:
        for line in c._wrap(f"  - {value_text(p)}", "    "):
            c._write(line + "\n")


def _summary(c: Console, ev: dict[str, Any]) -> None:
    if ev.get("command") in READ_ONLY:
        return
    c._close()
    c._write("\n" + summary_block(ev, width=c.width, paint=c._paint) + "\n")


class _Fields(dict[str, str]):
    """format_map() source: values as text, missing ones empty."""

    def __init__(self, ev: Mapping[str, Any]) -> None:
        super().__init__({k: value_text(v) for k, v in ev.items()})

    def __missing__(self, key: str) -> str:
        return ""


_HANDLERS: dict[str, Handler] = {
    "migration.start": _migration_start,
    "migration.applied": _migration_applied,
    "migration.heartbeat": _heartbeat,
    "migration.lock_timeout_retry": _lock_retry,
    "post_apply.start": _hook_start,
    "post_apply.done": _hook_done,
    "rollback.start": _rollback_start,
    "rollback.done": _rollback_done,
    "rollback.nothing_to_do": _simple("nothing to roll back"),
    "run.plan": _run_plan,
    "run.nothing_pending": _nothing_pending,
    "lock.waiting": _lock_waiting,
    "lock.acquired": _simple("got the migration lock"),
    "db.waiting": _db_waiting,
    "db.connected": _db_connected,
    "integrity.adopted": _simple("recorded the checksum of {migrations} (applied without one)"),
    "integrity.unknown_applied": _warning_with_message,
    "safety.finding": _finding,
    "safety.allow_destructive": _warning_with_message,
    "safety.summary": _safety_summary,
    "backup.started": _backup_started,
    "backup.progress": _transfer_progress("backup", "backing up"),
    "backup.verified": _backup_verified,
    "backup.retention_deleted": _simple("deleted old backup {uri}"),
    "restore.started": _restore_started,
    "restore.progress": _transfer_progress("restore", "restoring"),
    "restore.verify_progress": _transfer_progress("restore", "checking the dump"),
    "restore.completed": _restore_completed,
    "mark.done": _simple("marked {migration} as applied"),
    "mark.already_applied": _simple("{migration} was already applied"),
    "unmark.done": _simple("forgot {migrations} (not rolled back)"),
    "accept_changes.done": _simple("recorded the new checksum of {migrations}"),
    "config.unknown_variable": _warning_with_message,
    "config.invalid": _config_invalid,
    "migrate.summary": _summary,
}
_SUFFIX_HANDLERS: list[tuple[str, Handler]] = [
    (".failed", _failed),
    (".internal_error", _internal_error),
    (".interrupted", _interrupted),
]


# -- blocks ------------------------------------------------------------------------------------
def _no_paint(text: str, _code: str) -> str:
    return text


def next_step(reason: str, ev: Mapping[str, Any]) -> str:
    """What a person should do next, for each failure outcome."""
    mid, where = ev.get("migration"), _where(ev)
    if reason == "migration_failed":
        if ev.get("sqlstate") == "55P03":
            return (f"another transaction held a lock {mid} needs (see 'blocked by'); retry "
                    "when it has finished, or raise --lock-timeout / --lock-retries")
        if "executed_statements" in ev:
            ran = len(ev.get("executed_statements") or [])
            return (f"fix {where}, then run again: {ran} earlier statement(s) of this "
                    "non-transactional migration stayed applied, so they must be idempotent"
                    + ("; drop the INVALID index(es) first" if ev.get("invalid_indexes") else ""))
        return (f"fix {where}, then run again ({mid} was rolled back; migrations applied "
                "before it stay applied)")
    if reason == "safety_refused":
        blocking = ev.get("blocking") or []
        if blocking and isinstance(blocking[0], Mapping):
            f = blocking[0]
            return (f"after review, add  {approval_line(str(f.get('rule')))}  to "
                    f"{f.get('path')} (one line per finding), or set "
                    "MIGRATE_ALLOW_DESTRUCTIVE=true for this deploy")
        return "approve each finding in its file after review, or change the migration"
    if reason == "integrity_refused":
        if ev.get("changed"):
            return ("restore the original file(s); or, after review, run "
                    "`migrate-job accept-changes ID --yes`")
        return ("deploy an image that has these migrations, or set MIGRATE_ON_UNKNOWN=warn if "
                "the database is ahead on purpose")
    return {
        "config_error": "fix the setting or file named below, then run again",
        "database_unavailable": "check the URL, the network path, the credentials and TLS; "
                                "the job retried for --db-wait",
        "lock_timeout": "another runner holds the migration lock (named below); wait for it "
                        "or raise --lock-wait",
        "backup_failed": "nothing was migrated; fix the backup target or tools named below, or "
                         "deploy without a backup (--backup none)",
        "verification_failed": "run `migrate-job status` to compare files and records",
    }.get(reason, "see the message below")


def _where(ev: Mapping[str, Any]) -> str:
    if ev.get("file"):
        return f"{ev['file']}:{ev['line']}" if ev.get("line") else str(ev["file"])
    return str(ev.get("migration") or "the migration")


def _source_line(path: Any, line: Any) -> str | None:
    try:
        with open(str(path), encoding="utf-8") as f:
            for number, text in enumerate(f, start=1):
                if number == int(line):
                    return text.rstrip("\n")
    except (OSError, ValueError, TypeError):
        return None
    return None


def error_block(ev: Mapping[str, Any], width: int = MAX_WIDTH,
                paint: Callable[[str, str], str] = _no_paint) -> list[str]:
    """``{command}.failed`` as a person reads it: what to do next first, then what failed."""
    reason = str(ev.get("reason") or "error")
    code = ev.get("exit_code")
    command = str(ev.get("event", "")).rsplit(".", 1)[0] or "migrate-job"
    head = OUTCOMES.get(reason, reason)
    if reason == "migration_failed" and ev.get("migration"):
        head = f"migration {ev['migration']} failed"
    out = [f"✗ {command}: {head} (exit {code})"]

    def field(label: str, text: Any, *, raw: bool = False) -> None:
        if text is None or text == "" or text == []:
            return
        body = str(text) if raw else value_text(text)
        lead = f"  {label:<9}"
        out.extend(textwrap.wrap(body, width, initial_indent=lead,
                                 subsequent_indent=" " * len(lead), break_on_hyphens=False)
                   or [lead])

    blocking = [f for f in ev.get("blocking") or [] if isinstance(f, Mapping)]
    if reason == "safety_refused" and blocking:
        # The way out first, the approval line alone on its line so it can be copied.
        paths = sorted({str(f.get("path")) for f in blocking})
        field("next:", f"after review, add to {listing(paths, 2)} (one line per finding):")
        for rule in sorted({str(f.get("rule")) for f in blocking})[:5]:
            out.append(f"{' ' * 13}{approval_line(rule)}")
        field("", "or set MIGRATE_ALLOW_DESTRUCTIVE=true for this deploy")
    else:
        field("next:", next_step(reason, ev))
    if reason == "safety_refused" and blocking:
        pass  # the findings below say it all; the message would repeat them
    elif reason == "migration_failed" and ev.get("file"):
        field("at:", _where(ev))
        src = _source_line(ev.get("file"), ev.get("line")) if ev.get("line") else None
        if src is not None and src.strip():
            out.append(clip(f"  {ev['line']:>7} | {src.rstrip()}", width))
        field("sql:", clip(value_text(ev.get("statement")), 200))
        server = ev.get("server_message") or _server_text(str(ev.get("error") or ""),
                                                         ev.get("sqlstate"))
        field("error:", f"[{ev.get('sqlstate')}] {server}" if ev.get("sqlstate") else server)
    else:
        field("error:", ev.get("error"))
    field("detail:", ev.get("detail"))
    field("hint:", ev.get("hint"))
    if ev.get("blockers"):
        field("blocked:", blocker_text(ev["blockers"]))
    if ev.get("executed_statements"):
        field("ran:", f"{len(ev['executed_statements'])} statement(s) stayed applied: "
              + listing([clip(s, 60) for s in ev["executed_statements"]], 3))
    if ev.get("invalid_indexes"):
        field("invalid:", listing(ev["invalid_indexes"])
              + " (DROP INDEX CONCURRENTLY before retrying)")
    for f in (ev.get("blocking") or [])[:5]:
        if isinstance(f, Mapping):
            field("blocked:", f"{f.get('rule')} at {f.get('path')}:{f.get('line')}: "
                  f"{value_text(f.get('message'))}")
    if len(ev.get("blocking") or []) > 5:
        field("", f"and {len(ev['blocking']) - 5} more (see `migrate-job plan`)")
    if ev.get("holder"):
        field("holder:", blocker_text([ev["holder"]]))
    out = [clip(line, width) for line in out]
    out[0] = paint(out[0], "31")
    return out


def _server_text(message: str, sqlstate: Any) -> str:
    """The server's words from our own message ``... [SQLSTATE] text ...`` (JSON drops the
    separate field as a duplicate)."""
    marker = f"[{sqlstate}] "
    if sqlstate and marker in message:
        text = message.split(marker, 1)[1]
        return text.split(" (", 1)[0] if " earlier statement" in text else text
    return message


def summary_block(s: Mapping[str, Any], *, width: int = 100,
                  paint: Callable[[str, str], str] = _no_paint, with_message: bool = False
                  ) -> str:
    """The end of a command as a person reads it: what happened, how long, where, the backup."""
    code = s.get("exit_code", 0)
    outcome = str(s.get("outcome"))
    applied = list(s.get("applied") or [])
    what = OUTCOMES.get(outcome, outcome)
    if outcome == "applied":
        what = f"applied {len(applied)} migration{'s' if len(applied) != 1 else ''}"
    head = f"{s.get('command')}: {what} in {duration(s.get('duration_s'))} (exit {code})"
    lines = [head]
    lines.append(f"  database  {s.get('database') or 'not reached'}")
    if applied and s.get("command") != "status":
        rows = applied[:10]
        w = max(len(str(a.get("id"))) for a in rows)
        for i, a in enumerate(rows):
            label = "applied" if i == 0 else ""
            took = (f"  {duration(a['duration_s']):>8}" if a.get("duration_s") is not None
                    else "")
            lines.append(f"  {label:<9} {str(a.get('id')):<{w}}{took}")
        if len(applied) > 10:
            lines.append(f"            and {len(applied) - 10} more")
    elif applied:
        lines.append(f"  applied   {len(applied)}")
    elif s.get("command") in ("run", "demo"):
        lines.append("  applied   none")
    pending = list(s.get("pending") or [])
    if pending or s.get("command") in ("run", "demo"):
        lines.append(f"  pending   {listing(pending) if pending else 'none'}")
    for key, label in (("rolled_back", "rolled back"), ("marked", "marked"),
                       ("unmarked", "unmarked"), ("accepted", "accepted")):
        items = s.get(key)
        if items:
            ids = [i.get("id") if isinstance(i, Mapping) else i for i in items]
            lines.append(f"  {label:<9} {listing(ids)}")
    backup = s.get("backup")
    if isinstance(backup, Mapping) and backup.get("uri"):
        lines.append(f"  backup    {backup.get('uri')}")
        lines.append(f"            {size(backup.get('bytes'))}, sha256 "
                     f"{str(backup.get('sha256'))[:16]}…")
    elif s.get("command") in ("run", "demo"):
        lines.append("  backup    none taken")
    restored = s.get("restored")
    if isinstance(restored, Mapping):
        lines.append(f"  restored  {restored.get('uri')} ({size(restored.get('bytes'))})")
    counts = s.get("findings_by_rule")
    if isinstance(counts, Mapping) and counts:
        lines.append("  findings  " + ", ".join(f"{r} x{n}" for r, n in counts.items())
                     + " (details: migrate-job plan)")
    if with_message and s.get("message") and code != 0:
        lines += textwrap.wrap(value_text(s["message"]), width, initial_indent="  message   ",
                               subsequent_indent=" " * 12, break_on_hyphens=False)
    if s.get("truncated"):
        lines.append("  (some fields were shortened: " + listing(list(s["truncated"]), 2) + ")")
    lines = [clip(line, width) for line in lines]
    lines[0] = paint(lines[0], "32" if code == 0 else "31")
    return "\n".join(lines)
