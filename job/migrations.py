"""Reading migrations with yoyo's own reader, plus what yoyo lacks: content checksums and lines.

yoyo parses the directives (``depends``, ``transactional``), pairs ``.rollback.sql`` files,
finds ``post-apply*`` hooks and sorts by dependency. Its ``hash`` is only a hash of the file
*name*, so we keep our own content checksum. A migration's SQL is parsed only when it is about
to run (or be analysed), so a no-op deploy over hundreds of applied files stays cheap.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from job.errors import ConfigError

# Never change what this computes without bumping the name: a silent algorithm change would
# flag every applied migration as edited (Flyway #2027, Liquibase #4457).
CHECKSUM_ALGORITHM = "sha256-lf-v1"
# Assertions beside a migration. yoyo's reader would take them for migrations of their own
# (it reads every *.sql but *.rollback.sql), so read() sets them aside.
VERIFY_SUFFIX = ".verify.sql"


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
    single: bool = False  # exactly one statement (split by the grammar): can be pipelined
    # A statement of the migration's verify script (NNNN_name.verify.sql), and that file.
    verify: bool = False
    path: str | None = None

    def describe(self) -> str:
        if isinstance(self.apply, str):
            first = " ".join(self.apply.split())
            return first if len(first) <= 120 else first[:117] + "..."
        return repr(self.apply)


PHASES = ("pre", "post")


@dataclass(frozen=True)
class Header:
    depends: tuple[str, ...]
    transactional: bool
    body: str
    body_line: int
    phase: str = "pre"


@dataclass(eq=False)  # identity semantics: migrations are graph nodes
class Migration:
    id: str
    path: str
    checksum: str
    yoyo: Any = field(repr=False)
    post_apply: bool = False
    _steps: list[Step] | None = field(default=None, repr=False)
    _header: Header | None = field(default=None, repr=False)
    _verify_steps: list[Step] | None = field(default=None, repr=False)

    @property
    def hash(self) -> str:
        return migration_hash(self.id)

    @property
    def rollback_path(self) -> str:
        return os.path.splitext(self.path)[0] + ".rollback.sql"

    @property
    def verify_path(self) -> str | None:
        """``NNNN_name.verify.sql`` beside the migration, when there is one."""
        path = os.path.splitext(self.path)[0] + VERIFY_SUFFIX
        return path if os.path.isfile(path) else None

    def verify_steps(self) -> list[Step]:
        """The verify script's statements, run right after the migration's own (each query's
        first column of its first row must be true)."""
        if self._verify_steps is None:
            path = self.verify_path
            self._verify_steps = [] if path is None else _read_verify(path, self.id)
        return self._verify_steps

    @property
    def is_sql(self) -> bool:
        return self.path.endswith(".sql")

    @property
    def transactional(self) -> bool:
        if self.is_sql:
            return self.header().transactional
        self.load()
        return bool(self.yoyo.use_transactions)

    @property
    def phase(self) -> str:
        """``post`` for a ``-- phase: post`` migration (applied after the new version is live);
        everything else, Python migrations included, is ``pre``."""
        return self.header().phase if self.is_sql else "pre"

    @property
    def depends(self) -> set[str]:
        if self.is_sql:
            return set(self.header().depends)
        self.load()
        return {d.id for d in self.yoyo.depends}

    def header(self) -> Header:
        """Directives and body of a SQL migration, via yoyo's own directive parser.

        Cheap: no statement splitting, so planning hundreds of migrations stays fast.
        """
        if self._header is None:
            self._header = _read_header(self.path, self.id)
        return self._header

    def exec_steps(self) -> list[Step]:
        """What the applier sends, one statement at a time so a failure names its statement.

        Transactional SQL migrations are split by libpg_query (the real grammar, in C: much
        faster than yoyo's sqlparse split, which stays in use for non-transactional migrations
        and rollback pairing). If the grammar cannot split the body, it goes as one query and
        the server's error position names the line."""
        if self.is_sql and self.transactional:
            h = self.header()
            if not h.body.strip():
                return []
            return _split_statements(h.body, h.body_line) or [
                Step(apply=h.body, rollback=None, line=h.body_line)]
        return self.steps

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
        from yoyo.topologicalsort import CycleError, topological_sort

        items = list(subset)
        known = {m.id for m in self.migrations}
        chosen = {m.id: m for m in items}
        graph: dict[Migration, list[Migration]] = {}
        for m in items:
            missing = sorted(d for d in m.depends if d not in known)
            if missing:
                raise ConfigError(f"{m.path}: depends on unknown migration(s): "
                                  f"{', '.join(missing)}", migration=m.id, file=m.path)
            graph[m] = [chosen[d] for d in m.depends if d in chosen]
        try:
            return list(topological_sort(items, graph))
        except CycleError as exc:
            names = ", ".join(f"{m.id} ({m.path})" for m in exc.args[1])
            raise ConfigError(f"dependency cycle among migrations: {names}") from None


def read(directory: str) -> MigrationSet:
    """Read the migrations directory. Raises ConfigError naming the directory or file."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"migrations directory {directory!r} does not exist or is not a "
                          "directory (MIGRATE_MIGRATIONS_DIR)")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(f"migrations directory {directory!r} is not readable")
    _check_entries(path)
    _check_duplicate_ids(path)

    from yoyo import exceptions as yoyo_exceptions
    from yoyo import read_migrations

    try:
        found = read_migrations(str(path))
    except yoyo_exceptions.MigrationConflict as exc:
        raise ConfigError(f"{directory}: duplicate migration id {exc.args[0]!r}") from None
    migrations = [_wrap(m, post_apply=False) for m in found
                  if not m.path.endswith(VERIFY_SUFFIX)]
    hooks = [_wrap(m, post_apply=True) for m in found.post_apply
             if not m.path.endswith(VERIFY_SUFFIX)]
    _check_verify_scripts(path, migrations)
    return MigrationSet(str(path), migrations, hooks)


def _check_verify_scripts(path: Path, migrations: list[Migration]) -> None:
    """A verify script must sit beside its migration: a misspelt name would never run."""
    stems = {os.path.splitext(os.path.basename(m.path))[0] for m in migrations}
    for entry in sorted(path.glob("*" + VERIFY_SUFFIX)):
        stem = entry.name[: -len(VERIFY_SUFFIX)]
        if stem not in stems:
            raise ConfigError(
                f"{entry}: verify script without a migration {stem}.sql or {stem}.py beside it"
                + (" (post-apply hooks have no verify scripts)"
                   if stem.startswith("post-apply") else ""), file=str(entry))


def _read_verify(path: str, mid: str) -> list[Step]:
    try:
        text = Path(path).read_text(encoding="utf-8").replace("\r\n", "\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable: {exc}", migration=mid, file=path) from None
    if not text.strip():
        return []
    steps = _split_statements(text, 1)
    if steps is None:  # the grammar could not split it: one query, the server says where
        steps = [Step(apply=text, rollback=None, line=1)]
    for step in steps:
        step.verify, step.path = True, path
    return steps


# yoyo's ``newmigration`` writes its drafts under this prefix and its reader skips them.
_YOYO_DRAFT_PREFIX = "_tmp_yoyonew"


def _check_entries(path: Path) -> None:
    """Every entry named like a migration is a readable regular file, or the run stops.

    yoyo's reader keeps only ``is_file()`` entries, so a dangling symlink, a symlink loop or a
    directory named ``0005_x.sql`` would silently vanish from the plan ("nothing pending").
    """
    import errno
    import stat

    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        name = entry.name
        if os.path.splitext(name)[1] not in {".sql", ".py"}:
            continue
        if name.startswith((_YOYO_DRAFT_PREFIX, ".#")):  # yoyo drafts, editor lock links
            continue
        where = os.path.join(str(path), name)
        try:
            st = os.stat(where)  # follows symlinks
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                reason = "symbolic link loop"
            elif entry.is_symlink():
                reason = f"broken symbolic link to {os.readlink(where)!r} ({exc.strerror})"
            else:
                reason = exc.strerror or str(exc)
            raise ConfigError(f"{where}: cannot read migration entry: {reason}",
                              file=where) from None
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{where}: is a directory, not a migration file (every entry named "
                              "*.sql or *.py in the migrations directory is read as a migration)",
                              file=where)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: not a regular file (a FIFO, socket or device); "
                              "migrations must be files", file=where)
        try:
            with open(where, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{where}: unreadable: {exc.strerror or exc}", file=where) from None


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
        if name.endswith((".rollback.sql", VERIFY_SUFFIX)) or entry.suffix not in {".sql", ".py"}:
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
    """File line of the server's error position (1-based character offset in what was sent)."""
    if step.line is None or not isinstance(step.apply, str):
        return step.line
    if not position:
        return step.line
    return step.line + step.apply.count("\n", 0, max(0, position - 1))


def _split_statements(body: str, first_line: int) -> list[Step] | None:
    import importlib

    try:
        # importlib: postgast 0.2 ships a .pyi that mypy cannot parse.
        split = importlib.import_module("postgast").split
    except ImportError:
        return None
    try:
        parts = split(body, method="parser")
    except Exception:  # unparsable: let the server say where
        return None
    steps: list[Step] = []
    cursor = 0
    for part in parts:
        text = part.strip()
        idx = body.find(text, cursor)
        if not text or idx < 0:
            return None
        cursor = idx + len(text)
        steps.append(Step(apply=text, rollback=None, single=True,
                          line=first_line + body.count("\n", 0, idx)))
    return steps


def _read_header(path: str, mid: str) -> Header:
    from yoyo.migrations import parse_metadata_from_sql_comments

    try:
        text = Path(path).read_text(encoding="utf-8").replace("\r\n", "\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable: {exc}", migration=mid, file=path) from None
    directives, _, body = parse_metadata_from_sql_comments(text)
    flag = directives.get("transactional", "true").strip().lower()
    if flag not in {"true", "false"}:
        raise ConfigError(f"{path}: '-- transactional: {flag}' must be true or false",
                          migration=mid, file=path)
    body_line = text.count("\n") - body.count("\n") + 1
    return Header(tuple(directives.get("depends", "").split()), flag == "true", body, body_line,
                  _read_phase(text, path, mid))


_PHASE_DIRECTIVE = re.compile(r"^\s*--\s*phase\s*:\s*(.*?)\s*$", re.IGNORECASE)
_COMMENT_OR_EMPTY = re.compile(r"^(\s*|\s*--.*)$")


def _read_phase(text: str, path: str, mid: str) -> str:
    """``-- phase: pre|post`` in the leading comment block, where yoyo reads its own directives
    (yoyo does not know this one, so it stays a comment for the yoyo CLI)."""
    phase: str | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        m = _PHASE_DIRECTIVE.match(line)
        if m:
            value = m.group(1).lower()
            if value not in PHASES:
                raise ConfigError(f"{path}:{number}: '-- phase: {m.group(1)}' must be pre or post",
                                  migration=mid, file=path, line=number)
            if phase is not None and value != phase:
                raise ConfigError(f"{path}:{number}: a second '-- phase:' directive contradicts "
                                  f"the first ({phase})", migration=mid, file=path, line=number)
            phase = value
        elif not _COMMENT_OR_EMPTY.match(line):
            break
    return phase or "pre"
