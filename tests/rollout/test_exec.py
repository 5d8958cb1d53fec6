"""Entrypoint mode: `migrate-job exec [--phase pre] -- CMD ARG...` runs the pipeline, then
becomes CMD (same process) only when it exited 0; replicas starting together apply once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, job_env
from tests.core.helpers import applied_ids, env_for, events, query, scalar, write


def exec_job(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """stdout and stderr on one pipe, so the order of what the container prints is kept."""
    return subprocess.Popen([sys.executable, "-m", "job", "exec", *args], env=job_env(**env),
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def migrations(mdir: Path) -> None:
    write(mdir, "0001_hits.sql", "CREATE TABLE hits (id bigserial PRIMARY KEY, note text);\n")
    write(mdir, "0002_seed.sql", "-- depends: 0001_hits\n"
                                 "INSERT INTO hits (note) VALUES ('seeded once');\n")


def test_exec_starts_the_command_after_the_migrations_in_the_same_process(database_url,
                                                                           tmp_path):
    mdir = tmp_path / "m"
    migrations(mdir)
    # The command prints its PID: the same as the job's when the job became the command.
    proc = exec_job("--", "sh", "-c", 'echo "started pid=$$ "', env=env_for(database_url, mdir))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    lines = out.splitlines()
    started = [i for i, line in enumerate(lines) if line.startswith("started ")]
    assert len(started) == 1, out
    assert f"pid={proc.pid} " in lines[started[0]]  # execvp: the job became the command
    summary = [i for i, line in enumerate(lines) if '"event": "migrate.summary"' in line]
    applied = [i for i, line in enumerate(lines) if '"event": "migration.applied"' in line]
    assert len(applied) == 2 and summary and max(applied) < summary[-1] < started[0]
    assert applied_ids(database_url) == ["0001_hits", "0002_seed"]
    runs = query(database_url, "SELECT command, outcome, phase FROM _migrate_job_run")
    assert runs == [("exec", "applied", "all")]


def test_exec_never_starts_the_command_when_a_migration_fails(database_url, tmp_path):
    mdir = tmp_path / "m"
    migrations(mdir)
    write(mdir, "0003_broken.sql", "-- depends: 0002_seed\nINSERT INTO hits (nope) VALUES (1);\n")
    proc = exec_job("--", "sh", "-c", "echo started", env=env_for(database_url, mdir))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 8, out
    assert "started" not in out.splitlines()
    assert applied_ids(database_url) == ["0001_hits", "0002_seed"]


def test_exec_phase_pre_leaves_post_migrations_for_later(database_url, tmp_path):
    mdir = tmp_path / "m"
    migrations(mdir)
    write(mdir, "0003_later.sql", "-- depends: 0002_seed\n-- phase: post\n"
                                  "CREATE TABLE later (id bigint);\n")
    proc = exec_job("--phase", "pre", "--", "sh", "-c", "echo started",
                    env=env_for(database_url, mdir))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "started" in out.splitlines()
    assert applied_ids(database_url) == ["0001_hits", "0002_seed"]


def test_exec_without_a_runnable_command_exits_2_before_touching_the_database(tmp_path):
    env = env_for("postgresql://nobody:x@127.0.0.1:1/none", tmp_path, MIGRATE_DB_WAIT="30s")
    for args in ([], ["--"], ["--", "no-such-program-4711"], ["--", str(tmp_path)]):
        proc = exec_job(*args, env=env)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 2, (args, out)
        assert "usage: migrate-job exec" in out and "database." not in out


def test_ten_replicas_starting_together_apply_each_migration_once(database_url, tmp_path):
    mdir = tmp_path / "m"
    migrations(mdir)
    env = env_for(database_url, mdir, MIGRATE_LOCK_WAIT="5m", MIGRATE_DB_WAIT="60s")
    procs = [exec_job("--", "sh", "-c", 'echo "started $$"', env=env) for _ in range(10)]
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        outputs.append(out)
        assert p.returncode == 0, out
    for p, out in zip(procs, outputs, strict=True):
        assert f"started {p.pid}" in out.splitlines(), out  # every replica became its app
    assert scalar(database_url, "SELECT count(*) FROM hits") == 1  # the data migration ran once
    assert applied_ids(database_url) == ["0001_hits", "0002_seed"]
    outcomes = sorted(r[0] for r in query(database_url, "SELECT outcome FROM _migrate_job_run "
                                                        "WHERE command = 'exec'"))
    assert outcomes == ["applied"] + ["nothing_pending"] * 9
    applied_events = sum(1 for out in outputs for e in events(out)
                         if e.get("event") == "migration.applied")
    assert applied_events == 2
