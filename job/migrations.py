"""Reading migrations with yoyo's own reader, plus what yoyo lacks: content checksums and lines.

yoyo parses the directives (``depends``, ``transactional``), pairs ``.rollback.sql`` files,
finds ``post-apply*`` hooks and sorts by dependency. Its ``hash`` is only a hash of the file
*name*, so we keep our own content checksum. A migration's SQL is parsed only when it is about
to run (or be analysed), so a no-op deploy over hundreds of applied files stays cheap.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from job.errors import ConfigError

# Never change what this computes without bumping the name: a silent algorithm change would
# flag every applied migration as edited (Flyway #2027, Liquibase #4457).
CHECKSUM_ALGORITHM = "sha256-lf-v1"


def content_checksum(data: bytes) -> str:
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def migration_hash(migration_id: str) -> str:
    """yoyo's tracking key (sha256 of the id), so the yoyo CLI keeps reading our tables."""
    return hashlib.sha256(migration_id.encode("utf-8")).hexdigest()


@dataclass
class Step:
    """One statement (or a Python callable) and the rollback yoyo paired with it."""

    apply: str | Callable[[Any], None] | None
    rollback: str | Callable[[Any], None] | None
    line: int | None = None
    rollback_line: int | None = None
    ignore_errors: str | None = None

    def describe(self) -> str:
        if isinstance(self.apply, str):
            first = " ".join(self.apply.split())
            return first if len(first) <= 120 else first[:117] + "..."
        return repr(self.apply)


@dataclass
class Migration:
    id: str
    path: str
    checksum: str
    yoyo: Any = field(repr=False)
    post_apply: bool = False
    _steps: list[Step] | None = field(default=None, repr=False)

    @property
    def hash(self) -> str:
        return migration_hash(self.id)

    @property
    def rollback_path(self) -> str:
        return os.path.splitext(self.path)[0] + ".rollback.sql"

    @property
    def transactional(self) -> bool:
        self.load()
        return bool(self.yoyo.use_transactions)

    @property
    def depends(self) -> set[str]:
        self.load()
        return {d.id for d in self.yoyo.depends}

    def load(self) -> None:
        if self._steps is not None:
            return
        from yoyo import exceptions as yoyo_exceptions

        try:
            self.yoyo.load()
        except yoyo_exceptions.BadMigration as exc:
            detail = " ".join(str(a) for a in exc.args[1:]) or str(exc.args[0])
            if "dependencies" in str(exc):
                missing = _missing_dependencies(self.path)
                detail = f"depends on unknown migration(s): {', '.join(missing) or '?'}"
            raise ConfigError(f"{self.path}: cannot load migration: {detail}",
                              migration=self.id, file=self.path) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path}: unreadable: {exc}", migration=self.id,
                              file=self.path) from None
        except Exception as exc:  # a Python migration that raised while importing
            raise ConfigError(f"{self.path}: cannot load migration: {exc!r}",
                              migration=self.id, file=self.path) from None
        self._steps = list(_flatten(self.yoyo.steps))
        if self.path.endswith(".sql"):
            _locate(self._steps, self.path, "apply")
            if os.path.exists(self.rollback_path):
                _locate(self._steps, self.rollback_path, "rollback")

    @property
    def steps(self) -> list[Step]:
        self.load()
        assert self._steps is not None
        return self._steps

    @property
    def has_rollback(self) -> bool:
        return any(s.rollback for s in self.steps)


@dataclass
class MigrationSet:
    directory: str
    migrations: list[Migration]  # in file-name order, post-apply hooks excluded
    post_apply: list[Migration]

    def by_id(self) -> dict[str, Migration]:
        return {m.id: m for m in self.migrations}

    def in_dependency_order(self, subset: Iterable[Migration]) -> list[Migration]:
        from yoyo import exceptions as yoyo_exceptions
        from yoyo.migrations import topological_sort

        items = list(subset)
        for m in items:
            m.load()
        yoyo_by_obj = {id(m.yoyo): m for m in items}
        from yoyo.topologicalsort import CycleError

        try:
            # yoyo's sort is a generator: its own error wrapping never sees the cycle.
            ordered = list(topological_sort(m.yoyo for m in items))
        except CycleError as exc:
            names = ", ".join(f"{y.id} ({y.path})" for y in exc.args[1])
            raise ConfigError(f"dependency cycle among migrations: {names}") from None
        except yoyo_exceptions.BadMigration as exc:
            raise ConfigError(f"{self.directory}: {exc}") from None
        return [yoyo_by_obj[id(y)] for y in ordered]


def read(directory: str) -> MigrationSet:
    """Read the migrations directory. Raises ConfigError naming the directory or file."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"migrations directory {directory!r} does not exist or is not a "
                          "directory (MIGRATE_MIGRATIONS_DIR)")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(f"migrations directory {directory!r} is not readable")
    _check_duplicate_ids(path)

    from yoyo import exceptions as yoyo_exceptions
    from yoyo import read_migrations

    try:
        found = read_migrations(str(path))
    except yoyo_exceptions.MigrationConflict as exc:
        raise ConfigError(f"{directory}: duplicate migration id {exc.args[0]!r}") from None
    migrations = [_wrap(m, post_apply=False) for m in found]
    hooks = [_wrap(m, post_apply=True) for m in found.post_apply]
    return MigrationSet(str(path), migrations, hooks)


def _wrap(y: Any, post_apply: bool) -> Migration:
    try:
        data = Path(y.path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{y.path}: unreadable: {exc.strerror}", file=y.path) from None
    return Migration(y.id, y.path, content_checksum(data), y, post_apply)


def _check_duplicate_ids(path: Path) -> None:
    seen: dict[str, str] = {}
    for entry in sorted(path.iterdir()):
        name = entry.name
        if name.endswith(".rollback.sql") or entry.suffix not in {".sql", ".py"}:
            continue
        if not entry.is_file():
            continue
        stem = entry.stem
        if stem in seen:
            raise ConfigError(
                f"duplicate migration id {stem!r}: {seen[stem]} and {entry} (ids are file names "
                "without the extension and must be unique)"
            )
        seen[stem] = str(entry)


def _flatten(steps: Sequence[Any]) -> Iterable[Step]:
    from yoyo.migrations import StepGroup

    for wrapper in steps:
        inner = getattr(wrapper, "step", wrapper)
        ignore = getattr(wrapper, "ignore_errors", None)
        if isinstance(inner, StepGroup):
            yield from _flatten(inner.steps)
            continue
        yield Step(apply=inner._apply, rollback=inner._rollback, ignore_errors=ignore)


def _locate(steps: list[Step], path: str, direction: str) -> None:
    """Find each statement's first line in its file, for error messages and findings."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    text = text.replace("\r\n", "\n")
    # yoyo reverses rollback statements to pair them; locate them in file order.
    ordered = steps if direction == "apply" else list(reversed(steps))
    cursor = 0
    for step in ordered:
        sql = step.apply if direction == "apply" else step.rollback
        if not isinstance(sql, str):
            continue
        needle = sql.replace("\r\n", "\n").strip()
        idx = text.find(needle, cursor)
        if idx < 0:
            continue
        line = text.count("\n", 0, idx) + 1
        cursor = idx + len(needle)
        if direction == "apply":
            step.line = line
        else:
            step.rollback_line = line


def _missing_dependencies(path: str) -> list[str]:
    from yoyo.migrations import read_sql_migration

    if not path.endswith(".sql"):
        return []
    directives, _, _ = read_sql_migration(path)
    deps = directives.get("depends", "").split()
    directory = os.path.dirname(path)
    present = {os.path.splitext(n)[0] for n in os.listdir(directory)}
    return [d for d in deps if d not in present]


def line_of_error(step: Step, position: int | None) -> int | None:
    """File line of the server's error position (1-based character offset in the statement)."""
    if step.line is None or not isinstance(step.apply, str):
        return step.line
    if not position:
        return step.line
    stripped = step.apply.replace("\r\n", "\n").strip()
    return step.line + stripped.count("\n", 0, max(0, position - 1))
