"""The shape every catalogue rule has, and the registry the engine runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from ..context import Context
from ..model import DataSubject
from ..parser import Statement


@dataclass(frozen=True)
class Hit:
    message: str
    table: str | None = None  # relation whose size makes this matter (gets the stats suffix)
    line: int | None = None  # defaults to the statement's line
    subject: DataSubject | None = None  # data-loss: what would be lost, for the data probe
    statement: str | None = None  # defaults to the statement being checked (finish() rules)
    blocking: bool | None = None  # overrides the rule's `blocking` for this hit


class Rule:
    """One catalogue entry (shared/safety-rules.md): metadata plus a check over statements.

    `check` sees each statement with the context *before* the statement; `finish` runs once at
    the end of a migration file for rules about the whole transaction.
    """

    id: ClassVar[str]
    name: ClassVar[str]
    category: ClassVar[str]
    severity: ClassVar[str]  # error | warning | info
    lock: ClassVar[str] = ""
    summary: ClassVar[str]  # what it means, one sentence (docs table)
    safe_alternative: ClassVar[str]
    docs: ClassVar[str] = ""  # longer explanation, version notes
    blocking: ClassVar[bool] = False  # data-loss and would-fail-mid-deploy rules
    default_enabled: ClassVar[bool] = True  # opt-in rules are switched on by config `enable`
    statement_kinds: ClassVar[frozenset[str] | None] = None  # None: every statement

    def check(self, st: Statement, ctx: Context) -> Iterator[Hit]:
        return iter(())

    def finish(self, ctx: Context) -> Iterator[Hit]:
        return iter(())


RULES: list[Rule] = []


def rule(cls: type[Rule]) -> type[Rule]:
    RULES.append(cls())
    return cls


def by_id() -> dict[str, Rule]:
    return {r.id: r for r in RULES}
