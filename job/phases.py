"""Pre- and post-deploy phases: which pending migrations one `run --phase ...` applies.

Expand/contract needs two moments in a rollout: *pre* migrations run before the new version
starts (add the column), *post* migrations only after it is live and the old version is gone
(drop the old column). A file opts into post with ``-- phase: post``; everything else is pre.

Rules (docs/rollout.md):
- ``pre`` applies the pending pre migrations, ``post`` the pending post migrations (those left
  pending by an earlier release included), ``all`` the pre ones then the post ones, which is
  exactly ``pre`` followed by ``post``.
- A pre migration may not depend on a post migration that is still pending: it would run before
  its dependency. ``pre`` and ``all`` refuse (exit 2) and say how to get out.
- A post migration may not run before a pre migration it depends on: ``post`` refuses while such
  a dependency is pending (the pre phase of this release did not run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from job.errors import ConfigError

if TYPE_CHECKING:
    from job.migrations import Migration

PHASES = ("pre", "post", "all")


@dataclass
class Selection:
    phase: str
    to_apply: list[Migration] = field(default_factory=list)  # in the order run applies them
    deferred: list[Migration] = field(default_factory=list)  # pending, for the other phase

    @property
    def deferred_ids(self) -> list[str]:
        return [m.id for m in self.deferred]


def select(pending: Sequence[Migration], phase: str) -> Selection:
    """Split the pending migrations (in dependency order) for ``phase``; raise ConfigError when
    the phase cannot be applied in an order that respects the dependencies."""
    if phase not in PHASES:
        raise ConfigError(f"phase {phase!r} must be one of: {', '.join(PHASES)}")
    pre = [m for m in pending if m.phase == "pre"]
    post = [m for m in pending if m.phase == "post"]
    if phase in ("pre", "all"):
        _refuse_pre_on_pending_post(pre, {m.id: m for m in post})
    if phase == "post":
        _refuse_post_on_pending_pre(post, {m.id: m for m in pre})
        return Selection(phase, post, pre)
    if phase == "pre":
        return Selection(phase, pre, post)
    return Selection(phase, pre + post, [])


def _refuse_pre_on_pending_post(pre: list[Migration], pending_post: dict[str, Migration]) -> None:
    bad = [(m, pending_post[d]) for m in pre for d in sorted(m.depends) if d in pending_post]
    if not bad:
        return
    m, dep = bad[0]
    pairs = "; ".join(f"{a.path} (pre) depends on {b.id} (post, pending)" for a, b in bad)
    raise ConfigError(
        f"{pairs}. A pre migration runs before the new version starts and a post migration only "
        f"after it is live, so {m.id} would run before its dependency. Apply the pending post "
        f"migrations first (`migrate-job run --phase post`), or mark {m.id} `-- phase: post`, or "
        "remove the dependency. Nothing was applied.",
        migration=m.id, file=m.path, depends_on=dep.id,
        violations=[{"migration": a.id, "file": a.path, "depends_on": b.id} for a, b in bad])


def _refuse_post_on_pending_pre(post: list[Migration], pending_pre: dict[str, Migration]) -> None:
    bad = [(m, pending_pre[d]) for m in post for d in sorted(m.depends) if d in pending_pre]
    if not bad:
        return
    m, dep = bad[0]
    pairs = "; ".join(f"{a.path} (post) depends on {b.id} (pre, pending)" for a, b in bad)
    raise ConfigError(
        f"{pairs}. The pre phase of this release has not run: run `migrate-job run --phase pre` "
        "(before the new version starts), then the post phase. Nothing was applied.",
        migration=m.id, file=m.path, depends_on=dep.id,
        violations=[{"migration": a.id, "file": a.path, "depends_on": b.id} for a, b in bad])
