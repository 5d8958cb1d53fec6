"""Comment directives in migration files: yoyo's `-- transactional:` and our approvals.

An approval is part of the file, so it is reviewed in the pull request and covered by the
migration's checksum: editing the approved SQL changes the content the approval travels with.

    -- migrate-job: approve DL02 "column unused since v41"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ANY = re.compile(r"^\s*--\s*migrate-job\s*:(.*)$", re.I)
_APPROVE = re.compile(r'^\s*approve\s+([A-Za-z]{2}\d{2})\s+"([^"]*)"\s*$', re.I)
# Same shape as yoyo 9's parser: only the leading block of comments/blank lines holds directives.
_YOYO_DIRECTIVE = re.compile(r"^\s*--\s*(transactional|depends)\s*:\s*(.*)$")
_COMMENT_OR_EMPTY = re.compile(r"^(\s*|\s*--.*)$")


@dataclass(frozen=True)
class ApprovalLine:
    line: int
    rule: str
    reason: str


@dataclass(frozen=True)
class BadDirective:
    line: int
    message: str


def approvals(text: str, known_rules: set[str]) -> tuple[list[ApprovalLine], list[BadDirective]]:
    good: list[ApprovalLine] = []
    bad: list[BadDirective] = []
    for number, line in enumerate(text.splitlines(), start=1):
        m = _ANY.match(line)
        if not m:
            continue
        body = m.group(1)
        a = _APPROVE.match(body)
        if not a:
            bad.append(
                BadDirective(
                    number,
                    f'line {number}: expected `-- migrate-job: approve RULE "reason"`, '
                    f"got `{line.strip()[:80]}`",
                )
            )
            continue
        rule, reason = a.group(1).upper(), a.group(2).strip()
        if rule not in known_rules:
            bad.append(BadDirective(number, f"line {number}: approval names unknown rule {rule}"))
        elif not reason:
            bad.append(
                BadDirective(number, f"line {number}: approval of {rule} needs a non-empty reason")
            )
        else:
            good.append(ApprovalLine(number, rule, reason))
    return good, bad


def is_transactional(text: str) -> bool:
    """yoyo's reading of `-- transactional: false` in the leading comment block."""
    value = "true"
    for line in text.splitlines():
        m = _YOYO_DIRECTIVE.match(line)
        if m:
            if m.group(1) == "transactional":
                value = m.group(2).strip()
        elif not _COMMENT_OR_EMPTY.match(line):
            break
    return value.lower() != "false"


def declared_transactional(text: str) -> bool | None:
    """The `-- transactional:` a file declares in its leading comments, None if it has none."""
    value = None
    for line in text.splitlines():
        m = _YOYO_DIRECTIVE.match(line)
        if m:
            if m.group(1) == "transactional":
                value = m.group(2).strip().lower() != "false"
        elif not _COMMENT_OR_EMPTY.match(line):
            break
    return value


def declared_line(text: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        m = _YOYO_DIRECTIVE.match(line)
        if m and m.group(1) == "transactional":
            return number
    return 1


def rollback_mode_message(declared: bool, used: bool) -> str:
    mode = "in a transaction" if used else "without a transaction"
    return (f"this rollback script declares `-- transactional: {'true' if declared else 'false'}`"
            f", but yoyo runs a rollback in its up migration's mode: {mode}; move the directive "
            "to the up file (or split the migration)")
