"""One old migration -> one file in our layout (yoyo SQL with directives), deterministically.

The converted text depends only on the source files, never on the time or the database, so
importing the same history against a second environment produces byte-identical files (and the
import then only marks). Transaction mode: what the tool declared, unless the SQL itself says
otherwise — read with libpg_query, the real grammar:
- a statement that cannot run in a transaction block (CREATE INDEX CONCURRENTLY, VACUUM, ...)
  makes it ``-- transactional: false``;
- a whole-file ``BEGIN; ... COMMIT;`` wrapper (golang-migrate users write one) is removed: we run
  the file in one transaction ourselves, and our gate refuses transaction control inside it;
- any other transaction control (several BEGIN/COMMIT blocks) keeps the file as written and
  runs it with ``-- transactional: false``, so its own blocks behave as they did.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, cast

from job.adopt.model import SourceMigration

_CONTROL = {"TRANS_STMT_BEGIN", "TRANS_STMT_START", "TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK",
            "TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED", "TRANS_STMT_ROLLBACK_PREPARED"}
_OPEN = {"TRANS_STMT_BEGIN", "TRANS_STMT_START"}
_LEADING_BEGIN = re.compile(
    r"\A((?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*)(?:BEGIN|START)\b[^;]*;[ \t]*\n?", re.S | re.I)
_TRAILING_COMMIT = re.compile(
    r"(?:COMMIT|END)\b[^;]*;((?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*)\Z", re.S | re.I)
# yoyo reads these from every leading comment line of a file (job/migrations.py).
_DIRECTIVE = re.compile(r"^(\s*--\s*)(transactional|depends)(\s*:)", re.I)


@dataclass
class Converted:
    id: str
    source: SourceMigration
    text: str
    rollback: str | None
    transactional: bool
    notes: list[str] = field(default_factory=list)


class _Server:
    """What the transaction rule needs to know about the target server."""

    def __init__(self, version_num: int) -> None:
        self.version = version_num

    def pg(self, major: int) -> bool:
        return self.version >= major * 10000

    @property
    def version_text(self) -> str:
        return f"PostgreSQL {self.version // 10000}"


@dataclass
class Analysis:
    body: str
    transactional: bool
    reasons: list[str] = field(default_factory=list)


def analyse(sql: str, declared: bool, server_version: int) -> Analysis:
    from job.safety.parser import parse_file
    from job.safety.rules.transaction import non_transactional

    parsed = parse_file(sql)
    out = Analysis(sql, declared)
    if parsed.problems:
        first = parsed.problems[0]
        out.reasons.append(f"libpg_query could not read line {first.line} ({first.message}); "
                           "transaction mode kept as the tool declared it")
    stmts = parsed.statements
    server = cast(Any, _Server(server_version))
    blocking = [(s, why) for s in stmts if (why := non_transactional(s, server))]
    control = [s for s in stmts if s.kind == "TransactionStmt"
               and s.node.get("kind") in _CONTROL]
    wrapper = (len(control) == 2 and stmts[0] is control[0] and stmts[-1] is control[1]
               and control[0].node.get("kind") in _OPEN
               and control[1].node.get("kind") == "TRANS_STMT_COMMIT")
    if wrapper and not blocking and declared:
        stripped = _strip_wrapper(sql)
        if stripped is not None:
            out.body = stripped
            out.reasons.append(f"its BEGIN (line {control[0].line}) / COMMIT (line "
                               f"{control[1].line}) wrapper is removed: migrate-job runs it in "
                               "one transaction")
            return out
    if blocking:
        s, why = blocking[0]
        out.transactional = False
        out.reasons.append(f"line {s.line}: {why} cannot run inside a transaction block")
    elif control:
        out.transactional = False
        out.reasons.append(f"it manages its own transactions ({control[0].text.split()[0]} at "
                           f"line {control[0].line}): run as written, outside ours")
    return out


def _strip_wrapper(sql: str) -> str | None:
    m = _LEADING_BEGIN.match(sql)
    if not m:
        return None
    body = m.group(1) + sql[m.end():]
    tails = list(_TRAILING_COMMIT.finditer(body))
    if not tails:
        return None
    tail = tails[-1]
    if tail.end() != len(body):
        return None
    return body[:tail.start()].rstrip() + "\n" + tail.group(1).lstrip("\n")


def _neutralize(body: str) -> tuple[str, bool]:
    """Keep comment lines at the top of a body from being read as our directives."""
    lines = body.split("\n")
    changed = False
    for i, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("--"):
            break
        if _DIRECTIVE.match(line):
            lines[i] = _DIRECTIVE.sub(r"\1[source] \2\3", line)
            changed = True
    return "\n".join(lines), changed


def convert(src: SourceMigration, mid: str, depends: str | None, *, tool: str, root: str,
            server_version: int) -> Converted:
    assert src.up is not None
    rel = os.path.relpath(src.path, root)
    up = analyse(src.up, src.transactional, server_version)
    notes = list(up.reasons)
    if src.declared and not src.transactional:
        notes.insert(0, f"declared non-transactional ({src.declared})")
    body, neutralized = _neutralize(up.body.strip("\n") + "\n")
    if neutralized:
        notes.append("a leading comment looked like a directive; it is marked [source]")
    head = [f"-- imported from {tool}: {rel} ({src.key})"]
    if depends:
        head.append(f"-- depends: {depends}")
    if not up.transactional:
        head.append("-- transactional: false")
    head.extend(f"--   {n}" for n in notes)
    text = "\n".join(head) + "\n\n" + body
    rollback = None
    if src.down is not None and src.down.strip():
        down = analyse(src.down, up.transactional, server_version)
        if not down.transactional and up.transactional:
            notes.append("its rollback cannot run in a transaction (" + "; ".join(
                down.reasons) + "): `rollback` of it will fail until the script is edited")
        down_body, _ = _neutralize(down.body.strip("\n") + "\n")
        rollback = f"-- rollback of {mid}, imported from {tool}\n\n" + down_body
    return Converted(mid, src, text, rollback, up.transactional, notes)
