"""`migrate-job lint PATH...`: the gate over files, with no database (pull-request CI)."""

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


def migration_files(paths: Sequence[str]) -> list[str]:
    """Files named directly are linted as given; directories contribute their *.sql files except
    rollback scripts (which drop things by design), recursively, in name order."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for root, _dirs, names in os.walk(p):
                found += [
                    os.path.join(root, n)
                    for n in names
                    if n.endswith(".sql") and not n.endswith(".rollback.sql")
                ]
            out += sorted(found, key=lambda x: (os.path.basename(x), x))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise FileNotFoundError(p)
    return out


def read_sql_file(path: str) -> SqlFile:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    name = os.path.basename(path)
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
) -> int:
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
        files = [read_sql_file(p) for p in migration_files(paths)]
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
    report = analyze(files, server_version_num=None, stats=None, config=config)
    out.write(render(report, fmt))
    return EXIT_SAFETY if report.blocking() else EXIT_OK
