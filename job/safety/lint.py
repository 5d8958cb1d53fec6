"""`migrate-job lint PATH...`: the gate over files, with no database (pull-request CI).

The files are analysed as one run on a database that has none of them: what they create is
new; what they touch but do not create is unknown (it may exist and hold data), so a data-loss
finding on it blocks. `--assume-applied ID` treats the migrations up to ID as applied already
(the pull-request case: only the new ones are judged, against the schema the old ones built).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from .config import load_config
from .directives import is_transactional
from .engine import analyze
from .model import SqlFile
from .report import FORMATS, render

EXIT_OK, EXIT_USAGE, EXIT_SAFETY = 0, 2, 6


def migration_files(paths: Sequence[str], assume_applied: str | None = None) -> tuple[
        list[SqlFile], list[SqlFile]]:
    """(files to analyse, files assumed applied) for `lint PATH...`.

    A directory is read as `run` reads it: yoyo's reader (its top level only: `run` never
    applies a subdirectory), in dependency order, post-apply hooks last, and each migration's
    `.rollback.sql` in the up's transaction mode (yoyo runs a rollback in the up's mode) and its
    `.verify.sql` (in a transaction, where it runs).
    Python migrations are not analysed. Files named directly are analysed in the order given.
    With `assume_applied`, the migrations up to and including that id seed the model instead.
    """
    from job import migrations
    from job.errors import ConfigError

    out: list[SqlFile] = []
    applied: list[SqlFile] = []
    found_assumed = assume_applied is None
    for p in paths:
        if os.path.isdir(p):
            try:
                found = migrations.read(p)
                ordered = found.in_dependency_order(found.migrations)
                modes = {m.id: m.transactional for m in [*ordered, *found.post_apply]
                         if m.is_sql}
            except ConfigError as exc:
                raise ValueError(exc.message) from None
            target = out if assume_applied is None else applied
            for m in [*ordered, *found.post_apply]:
                if not m.is_sql:
                    continue
                target.append(_read(m.path, m.id, modes[m.id]))
                if m.verify_path:  # as the gate reads it in `run`: inside the transaction
                    target.append(_read(m.verify_path, f"{m.id}.verify", True))
                if os.path.exists(m.rollback_path):
                    target.append(_read(m.rollback_path, m.id, modes[m.id], rollback=True))
                if m.verify_path:  # runs inside the migration's transaction
                    target.append(_read(m.verify_path, f"{m.id}.verify", True))
                if m.id == assume_applied:
                    found_assumed = True
                    target = out
        elif os.path.isfile(p):
            out.append(read_sql_file(p))
        else:
            raise FileNotFoundError(p)
    if not found_assumed:
        raise ValueError(f"--assume-applied {assume_applied}: no such migration in "
                         f"{', '.join(paths)}")
    return out, applied


def _read(path: str, mid: str, transactional: bool, rollback: bool = False) -> SqlFile:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return SqlFile(id=mid, path=path, text=text, transactional=transactional, rollback=rollback)


def read_sql_file(path: str) -> SqlFile:
    """A file named on the command line. A rollback script takes its up file's mode when the
    up file is next to it (that is the mode yoyo uses), else its own."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    name = os.path.basename(path)
    if name.endswith(".rollback.sql"):
        up = path[: -len(".rollback.sql")] + ".sql"
        mode = is_transactional(text)
        if os.path.isfile(up):
            with open(up, encoding="utf-8") as fh:
                mode = is_transactional(fh.read())
        return SqlFile(id=name[: -len(".rollback.sql")], path=path, text=text,
                       transactional=mode, rollback=True)
    if name.endswith(".verify.sql"):  # runs inside its migration's transaction
        return SqlFile(id=name[: -len(".sql")], path=path, text=text, transactional=True)
    stem = name[: -len(".sql")] if name.endswith(".sql") else name
    return SqlFile(id=stem, path=path, text=text, transactional=is_transactional(text))


def lint_main(
    paths: Sequence[str],
    *,
    fmt: str,
    pg_version: int | None,
    config_dir: str,
    out: TextIO | None = None,
    err: TextIO | None = None,
    lock_timeout: float = 0.0,
    statement_timeout: float = 0.0,
    assume_applied: str | None = None,
) -> int:
    """Exit code: 0 clean, 6 blocking findings, 2 bad input. `lock_timeout` and
    `statement_timeout` are the job's own (MIGRATE_LOCK_TIMEOUT ...): lint judges the files as
    migrate-job will run them."""
    out = out or sys.stdout
    err = err or sys.stderr
    if fmt not in FORMATS:
        print(f"migrate-job lint: unknown format {fmt!r} (one of {', '.join(FORMATS)})", file=err)
        return EXIT_USAGE
    if not paths:
        print("migrate-job lint: give at least one migration file or directory", file=err)
        return EXIT_USAGE
    try:
        config = load_config(config_dir)
        if pg_version is not None and pg_version <= 0:
            raise ValueError(f"--pg-version must be positive, got {pg_version}")
        files, applied = migration_files(paths, assume_applied)
    except FileNotFoundError as exc:
        print(
            f"migrate-job lint: no such file or directory: {exc.args[0] if exc.args else exc}",
            file=err,
        )
        return EXIT_USAGE
    except UnicodeDecodeError as exc:
        print(f"migrate-job lint: a migration file is not UTF-8: {exc}", file=err)
        return EXIT_USAGE
    except (ValueError, OSError) as exc:
        print(f"migrate-job lint: {exc}", file=err)
        return EXIT_USAGE
    if pg_version is not None:
        config = dataclasses.replace(config, pg_version=pg_version)
    report = analyze(files, server_version_num=None, stats=None, config=config,
                     lock_timeout=lock_timeout, statement_timeout=statement_timeout,
                     applied=applied)
    out.write(render(report, fmt))
    return EXIT_SAFETY if report.blocking() else EXIT_OK
