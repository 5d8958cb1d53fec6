"""Compares two schema descriptions and says, object by object, what changed.

``column public.users.nickname added``, ``index public.orders_customer_idx dropped``,
``body of function public.f(integer) changed``, ``default of column public.t.c changed (was
0, now 1)``. A table added or dropped is one line, not one more per column and index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from job.drift.catalog import Description

_SHOW_VALUES_UP_TO = 80  # longer values (view definitions) are named, not printed
_NEVER_SHOWN = {"body"}  # hashes say nothing to a reader


@dataclass(frozen=True)
class Change:
    kind: str  # added | dropped | changed
    object: str  # e.g. "column public.users.nickname"
    attribute: str | None = None
    before: Any = None
    after: Any = None

    def text(self) -> str:
        if self.kind != "changed":
            return f"{self.object} {self.kind}"
        text = f"{self.attribute} of {self.object} changed"
        if self.attribute not in _NEVER_SHOWN and _short(self.before) and _short(self.after):
            text += f" (was {_show(self.before)}, now {_show(self.after)})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"change": self.kind, "object": self.object, "attribute": self.attribute,
                "text": self.text()}


def _short(value: Any) -> bool:
    return value is None or len(str(value)) <= _SHOW_VALUES_UP_TO


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def compare(before: Description, after: Description,
            schemas: Iterable[str] | None = None) -> list[Change]:
    """Changes from ``before`` to ``after``, limited to ``schemas`` when given (the managed
    schemas both descriptions were taken of)."""
    names = sorted(set(schemas) if schemas is not None else set(before) | set(after))
    changes: list[Change] = []
    for schema in names:
        old, new = before.get(schema, {}), after.get(schema, {})
        gone = set(old) - set(new)
        came = set(new) - set(old)
        # A table added or dropped carries its columns, indexes and triggers with it.
        gone_parents = {k for k in gone if not old[k].get("of")}
        came_parents = {k for k in came if not new[k].get("of")}
        for key in sorted(gone):
            if old[key].get("of") not in gone_parents:
                changes.append(Change("dropped", key))
        for key in sorted(came):
            if new[key].get("of") not in came_parents:
                changes.append(Change("added", key))
        for key in sorted(set(old) & set(new)):
            a, b = old[key], new[key]
            if a == b:
                continue
            for attr in sorted(set(a) | set(b)):
                if attr == "valid" and a.get(attr) is False and b.get(attr) is None:
                    # An INVALID index rebuilt (REINDEX CONCURRENTLY, as the job itself
                    # advises): a repair, not a schema change anyone has to review.
                    continue
                if a.get(attr) != b.get(attr):
                    changes.append(Change("changed", key, attr, a.get(attr), b.get(attr)))
    return changes


def summarize(changes: list[Change], limit: int = 10) -> str:
    """One line for a message: the first ``limit`` changes and how many more."""
    shown = "; ".join(c.text() for c in changes[:limit])
    if len(changes) > limit:
        shown += f"; and {len(changes) - limit} more"
    return shown
