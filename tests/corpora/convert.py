"""Turns a project's published migration history into our layout (yoyo format): one file per
migration, a `-- depends:` chain in the project's own order, `-- transactional: false` where a
statement cannot run inside a transaction. Our code; the histories come from pinned packages
(tests/corpora/install.sh), never committed here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from job.safety.catalog import Catalog
from job.safety.context import Context, RunState
from job.safety.model import SafetyConfig
from job.safety.parser import parse_file
from job.safety.rules.transaction import non_transactional

TOOLS = Path(__file__).resolve().parents[2] / ".test-tools" / "corpora"


@dataclass(frozen=True)
class History:
    name: str
    licence: Path
    migrations: list[tuple[str, str]]  # (id, SQL) in the project's order


def _needs_no_transaction(sql: str) -> bool:
    ctx = Context(migration="x", path="x", transactional=True, version=180000, version_known=True,
                  version_exact=True, config=SafetyConfig(), run=RunState(Catalog()))
    return any(non_transactional(st, ctx) for st in parse_file(sql).statements)


def write(history: History, directory: Path, upto: int | None = None) -> list[str]:
    """Write the history's first `upto` migrations into `directory`; returns their ids."""
    directory.mkdir(parents=True, exist_ok=True)
    ids = []
    previous = None
    for mid, sql in history.migrations[:upto]:
        header = []
        if previous:
            header.append(f"-- depends: {previous}")
        if _needs_no_transaction(sql):
            header.append("-- transactional: false")
        (directory / f"{mid}.sql").write_text("\n".join(header) + ("\n" if header else "") + sql)
        ids.append(mid)
        previous = mid
    return ids


def procrastinate() -> History:
    root = TOOLS / "procrastinate"
    files = sorted((root / "migrations").glob("*.sql"))
    return History("procrastinate", root / "LICENSE.md", [
        (f"{i:04d}_{re.sub(r'[^a-z0-9_]', '_', f.stem.lower())}", f.read_text(encoding="utf-8"))
        for i, f in enumerate(files, start=1)])


def graphile_worker() -> History:
    root = TOOLS / "graphile-worker"
    # What graphile-worker's installer does before its first migration, in our own words.
    bootstrap = ("CREATE SCHEMA graphile_worker;\n"
                 "CREATE TABLE graphile_worker.migrations (id int PRIMARY KEY, "
                 "ts timestamptz DEFAULT now() NOT NULL, breaking boolean NOT NULL DEFAULT false);\n")
    out = [("0000_bootstrap", bootstrap)]
    for f in sorted((root / "sql").glob("*.sql")):
        sql = f.read_text(encoding="utf-8").replace(":GRAPHILE_WORKER_SCHEMA", "graphile_worker")
        out.append((f"{int(f.stem):04d}_graphile_worker", sql))
    return History("graphile-worker", root / "LICENSE.md", out)


HISTORIES = {"procrastinate": procrastinate, "graphile-worker": graphile_worker}
