"""Rolling back a chain of applied migrations, with a safety net (``rollback`` and ``undo``).

Before the first rollback script runs, every script of the chain is checked: it exists (or says
``-- rollback: nothing to undo``), it parses (libpg_query), it can run in its migration's
transaction mode (the rollback runs in the *up* file's mode, as yoyo does: directives in a
rollback file are ignored), and the safety gate has no unapproved finding in it. Any problem:
nothing is rolled back, exit 2 (cannot run as written) or 6 (dangerous), naming file:line.
Then the person confirms (the prompt names the database and the chain), a backup is taken when
``MIGRATE_BACKUP`` is set, and each migration is rolled back atomically with its record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job.errors import ConfigError, SafetyRefusal

if TYPE_CHECKING:
    from job.migrations import Migration
    from job.pipeline import Plan
    from job.runtime import Context

NOTHING_TO_UNDO = "nothing to undo"
_ROLLBACK_DIRECTIVE = re.compile(r"^\s*--\s*rollback\s*:\s*(.*?)\s*$", re.IGNORECASE)
_TX_DIRECTIVE = re.compile(r"^\s*--\s*transactional\s*:\s*(.*?)\s*$", re.IGNORECASE)
_COMMENT_OR_EMPTY = re.compile(r"^(\s*|\s*--.*)$")

Confirm = Callable[[str, Sequence[str]], None]


@dataclass
class Script:
    migration: Migration
    path: str
    text: str
    nothing_to_undo: bool
    statements: int

    def describe(self) -> str:
        if self.nothing_to_undo:
            return "nothing to undo (only the record is removed)"
        mode = "transactional" if self.migration.transactional else "NON-transactional"
        return f"{self.path} ({self.statements} statement(s), {mode})"


@dataclass(frozen=True)
class Problem:
    migration: str
    file: str
    line: int | None
    message: str

    def text(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "file": self.file, "line": self.line,
                "message": self.message}


def run_chain(ctx: Context, plan: Plan, chain: Sequence[Migration], confirm: Confirm, *,
              title: str, heading: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Pre-flight, confirm, back up, then roll back ``chain`` (newest first)."""
    from job import drift
    from job.applier import Applier
    from job.pipeline import take_backup_if_configured

    assert ctx.lock_conn is not None
    with ctx.lock_mutex:  # an out-of-band change is reviewed before anything is undone on top
        drift.check(ctx.lock_conn, ctx.settings, ctx.log, command=ctx.command, run_id=ctx.run_id)
    scripts = preflight(ctx, chain)
    database = ctx.summary.database or "?"
    lines = [*heading, f"database: {database}", "will roll back, in this order:"]
    lines += [f"  {i}. {s.migration.id}  {s.describe()}" for i, s in enumerate(scripts, 1)]
    backup = ctx.settings.backup
    lines.append(f"backup first: {backup}" if backup != "none"
                 else "backup: none (set MIGRATE_BACKUP to take one first)")
    ctx.log.info("rollback.plan", database=database, migrations=[m.id for m in chain],
                 backup=backup)
    confirm(title, lines)
    take_backup_if_configured(ctx, plan, ctx.lock_conn)
    applier = Applier(ctx.connect_migration(), ctx.settings, ctx.log)
    rolled: list[dict[str, Any]] = []
    try:
        for m in chain:
            duration = applier.rollback(m)
            rolled.append({"id": m.id, "duration_s": round(duration, 3)})
    finally:
        ctx.summary.extra["rolled_back"] = rolled
        if rolled:
            with ctx.lock_mutex:
                drift.record_quietly(ctx.lock_conn, ctx.settings, ctx.log,
                                     f"{ctx.command} of {len(rolled)} migration(s)",
                                     run_id=ctx.run_id)
    return rolled


def preflight(ctx: Context, chain: Sequence[Migration]) -> list[Script]:
    """Every script of the chain, checked; raises before anything ran."""
    from job.rollout_gate import ScriptToGate, gate_rollback_scripts

    problems: list[Problem] = []
    scripts: list[Script] = []
    for m in chain:
        script, found = read_script(m)
        problems += found
        if script is not None:
            scripts.append(script)
    gated = [ScriptToGate(s.migration.id, s.path, s.text, s.migration.transactional)
             for s in scripts if not s.nothing_to_undo and s.migration.is_sql]
    result = gate_rollback_scripts(ctx.settings, gated, ctx.lock_conn, ctx.lock_mutex)
    by_id = {m.id: m for m in chain}
    for f in result.findings:
        if f["severity"] != "info":
            ctx.log.info("rollback.finding", rule=f["rule"], severity=f["severity"],
                         file=f["path"], line=f["line"], message=f["message"],
                         approved_by=f.get("approved_by"))
    problems += [_unrunnable(f, by_id[f["migration"]]) for f in result.unrunnable]
    if problems:
        raise ConfigError(
            f"nothing rolled back: {len(problems)} problem(s) in the rollback chain, found "
            "before any script ran: " + "; ".join(p.text() for p in problems),
            problems=[p.as_dict() for p in problems],
            migration=problems[0].migration, file=problems[0].file, line=problems[0].line)
    if result.dangerous:
        first = result.dangerous[0]
        raise SafetyRefusal(
            f"nothing rolled back: {len(result.dangerous)} unapproved dangerous finding(s) in "
            f"the rollback scripts; first: {first['rule']} in {first['path']}:{first['line']}: "
            f"{first['message']}. Approve in the rollback script with `-- migrate-job: approve "
            f"{first['rule']} \"reason\"`, or pass --allow-destructive "
            "(MIGRATE_ALLOW_DESTRUCTIVE=true) for this rollback.",
            blocking=result.dangerous)
    return scripts


def read_script(m: Migration) -> tuple[Script | None, list[Problem]]:
    """The rollback script of ``m`` and what is wrong with it (without the gate)."""
    path = m.rollback_path
    if not m.is_sql:
        if m.has_rollback:
            return Script(m, m.path, "", False, sum(1 for s in m.steps if s.rollback)), []
        return None, [Problem(m.id, m.path, None, "no rollback step in this Python migration")]
    if not Path(path).exists():
        return None, [Problem(m.id, path, None,
                              f"no rollback script for {m.id} (missing); write it, or create it "
                              f"with the line `-- rollback: {NOTHING_TO_UNDO}` when undoing "
                              "only means forgetting the record")]
    try:
        text = Path(path).read_text(encoding="utf-8").replace("\r\n", "\n")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(m.id, path, None, f"unreadable: {exc}")]
    problems: list[Problem] = []
    nothing, directive_line = False, None
    for number, line in enumerate(text.split("\n"), start=1):
        d = _ROLLBACK_DIRECTIVE.match(line)
        t = _TX_DIRECTIVE.match(line)
        if d:
            if d.group(1).lower() != NOTHING_TO_UNDO:
                problems.append(Problem(m.id, path, number,
                                        f"unknown directive `-- rollback: {d.group(1)}` (the "
                                        f"only one is `-- rollback: {NOTHING_TO_UNDO}`)"))
            else:
                nothing, directive_line = True, number
        elif t and t.group(1).lower() == "false" and m.transactional:
            problems.append(Problem(
                m.id, path, number,
                f"`-- transactional: false` has no effect in a rollback script: it runs in the "
                f"transaction mode of {Path(m.path).name} (transactional). Mark "
                f"{Path(m.path).name} `-- transactional: false` instead (then `migrate-job "
                f"accept-changes {m.id} --yes`), or make the script transactional"))
        elif not _COMMENT_OR_EMPTY.match(line):
            break
    statements = sum(1 for s in m.steps if s.rollback)
    if nothing and statements:
        problems.append(Problem(m.id, path, directive_line,
                                f"says `-- rollback: {NOTHING_TO_UNDO}` but has "
                                f"{statements} statement(s); remove one or the other"))
    elif not nothing and not statements:
        problems.append(Problem(m.id, path, None,
                                "the rollback script has no statement (comments only); if "
                                "nothing needs undoing, say so with the line "
                                f"`-- rollback: {NOTHING_TO_UNDO}`"))
    return Script(m, path, text, nothing, statements), problems


def _unrunnable(f: dict[str, Any], m: Migration) -> Problem:
    message = f"{f['rule']} {f['message']}"
    if f["rule"] == "TX01":
        up = Path(m.path).name
        message = (f"{f['rule']} {f['statement'] or 'this statement'} cannot run inside a "
                   f"transaction, and this rollback runs in the transaction mode of {up} "
                   f"(transactional; directives in rollback scripts are ignored). Fix: drop "
                   f"CONCURRENTLY in the rollback script, or mark {up} `-- transactional: "
                   f"false` and record the edit with `migrate-job accept-changes {m.id} --yes`")
    return Problem(m.id, f["path"], f["line"], message)
