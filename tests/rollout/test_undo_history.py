"""`undo` reverts exactly what one recorded run applied (rollback scripts, or `--restore` of the
backup that run took); `history` lists the runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.core.helpers import applied_ids, env_for, query, summary, table_exists, write
from tests.rollout.pty_run import run_on_tty


def release(mdir: Path, n: int) -> None:
    """Release n adds two migrations, each creating a table."""
    for i in (2 * n - 1, 2 * n):
        prev = f"-- depends: {i - 1:04d}_t{i - 1}\n" if i > 1 else ""
        write(mdir, f"{i:04d}_t{i}.sql", f"{prev}CREATE TABLE t{i} (id bigint);\n")
        write(mdir, f"{i:04d}_t{i}.rollback.sql", f"DROP TABLE t{i};\n")


def run_ids(url: str) -> list[str]:
    """Run ids of the recorded runs, oldest first."""
    return [str(r[0]) for r in query(url, "SELECT id FROM _migrate_job_run ORDER BY "
                                          "started_at_utc")]


def deploy(run_job: Any, env: dict[str, str], *args: str) -> str:
    res = run_job("run", *args, env=env)
    assert res.returncode == 0, res.stderr
    return str(query(env["MIGRATE_DATABASE_URL"], "SELECT id FROM _migrate_job_run ORDER BY "
                                                   "started_at_utc DESC LIMIT 1")[0][0])


def test_undo_reverts_exactly_the_last_runs_migrations(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = env_for(database_url, mdir)
    release(mdir, 1)
    first = deploy(run_job, env)
    release(mdir, 2)
    second = deploy(run_job, env)
    assert applied_ids(database_url) == ["0001_t1", "0002_t2", "0003_t3", "0004_t4"]

    res = run_job("undo", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    s = summary(res.stderr)
    assert [r["id"] for r in s["rolled_back"]] == ["0004_t4", "0003_t3"]  # newest first
    assert s["undoes"]["run_id"] == second and s["mode"] == "scripts"
    assert applied_ids(database_url) == ["0001_t1", "0002_t2"]  # the earlier run's stay
    assert table_exists(database_url, "t2") and not table_exists(database_url, "t3")

    # Again: the last run that applied something is already undone; nothing else is touched.
    again = run_job("undo", "--yes", env=env)
    assert again.returncode == 0, again.stderr
    assert summary(again.stderr)["outcome"] == "nothing_to_undo"
    assert applied_ids(database_url) == ["0001_t1", "0002_t2"]

    # The earlier run, by a prefix of its id.
    earlier = run_job("undo", first[:8], "--yes", env=env)
    assert earlier.returncode == 0, earlier.stderr
    assert [r["id"] for r in summary(earlier.stderr)["rolled_back"]] == ["0002_t2", "0001_t1"]
    assert applied_ids(database_url) == []
    undo_rows = query(database_url, "SELECT undoes::text, reverted FROM _migrate_job_run WHERE "
                                    "command = 'undo' AND reverted IS NOT NULL "
                                    "AND reverted <> '[]' ORDER BY started_at_utc")
    assert undo_rows == [(second, ["0004_t4", "0003_t3"]), (first, ["0002_t2", "0001_t1"])]


def test_undo_refuses_while_a_later_run_sits_on_top(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = env_for(database_url, mdir)
    release(mdir, 1)
    first = deploy(run_job, env)
    release(mdir, 2)
    second = deploy(run_job, env)
    res = run_job("undo", first, "--yes", env=env)
    assert res.returncode == 2, res.stderr
    message = summary(res.stderr)["message"]
    assert f"0003_t3 (applied by run {second[:8]}" in message
    assert f"`migrate-job undo {second[:8]} --yes`" in message
    assert len(applied_ids(database_url)) == 4


def test_a_migration_reapplied_by_a_later_run_belongs_to_that_run(database_url, run_job,
                                                                  tmp_path):
    mdir = tmp_path / "m"
    env = env_for(database_url, mdir)
    release(mdir, 1)
    first = deploy(run_job, env)
    assert run_job("rollback", "--yes", env=env).returncode == 0  # 0002_t2 rolled back by hand
    again = deploy(run_job, env)  # and applied again by a later run
    refused = run_job("undo", first[:8], "--yes", env=env)
    assert refused.returncode == 2
    assert f"0002_t2 (applied by run {again[:8]}" in summary(refused.stderr)["message"]
    res = run_job("undo", "--yes", env=env)
    assert [r["id"] for r in summary(res.stderr)["rolled_back"]] == ["0002_t2"]
    assert applied_ids(database_url) == ["0001_t1"]


def rows(url: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT * FROM account ORDER BY id")


def test_undo_restore_brings_the_data_back_exactly(pg_server, database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    backups = tmp_path / "backups"
    env = env_for(database_url, mdir, MIGRATE_PG_BIN_DIR=str(pg_server.bin_dir))
    write(mdir, "0001_account.sql",
          "CREATE TABLE account (id bigint PRIMARY KEY, name text, balance numeric(12, 2));\n")
    first = deploy(run_job, env)
    query(database_url, "INSERT INTO account SELECT g, 'user ' || g, g * 1.5 "
                        "FROM generate_series(1, 500) g")
    before = rows(database_url)
    # A deploy that rewrites data: only its backup can bring the old values back.
    write(mdir, "0002_rewrite.sql",
          "-- depends: 0001_account\n"
          "-- migrate-job: approve DL06 \"test\"\n-- migrate-job: approve DL08 \"test\"\n"
          "UPDATE account SET name = upper(name), balance = 0 WHERE true;\n"
          "DELETE FROM account WHERE id > 400;\n"
          "ALTER TABLE account ALTER COLUMN balance TYPE integer;\n")
    second = deploy(run_job, {**env, "MIGRATE_BACKUP": f"file://{backups}"})
    assert rows(database_url) != before

    res = run_job("undo", "--restore", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    s = summary(res.stderr)
    assert s["undoes"]["run_id"] == second and s["mode"] == "restore"
    assert rows(database_url) == before
    assert applied_ids(database_url) == ["0001_account"]
    # The history survives the restore: both runs and the undo are there.
    history = json.loads(run_job("history", "--json", env=env).stdout)["runs"]
    assert [(r["id"], r["command"]) for r in history][1:] == [(second, "run"), (first, "run")]
    assert history[0]["command"] == "undo" and history[0]["undoes"] == second
    assert history[0]["reverted"] == ["0002_rewrite"]
    assert history[1]["backup"]["uri"].startswith(f"file://{backups}/")


def test_undo_restore_refuses_a_run_that_took_no_backup(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = env_for(database_url, mdir)
    release(mdir, 1)
    run_id = deploy(run_job, env)
    res = run_job("undo", "--restore", "--yes", env=env)
    assert res.returncode == 2
    message = summary(res.stderr)["message"]
    assert f"run {run_id[:8]}" in message and "took no backup" in message
    assert f"`migrate-job undo {run_id[:8]} --yes`" in message
    assert len(applied_ids(database_url)) == 2


def test_undo_restore_refuses_a_backup_that_is_not_the_one_the_run_took(pg_server, database_url,
                                                                        run_job, tmp_path):
    mdir = tmp_path / "m"
    backups = tmp_path / "backups"
    env = env_for(database_url, mdir, MIGRATE_PG_BIN_DIR=str(pg_server.bin_dir),
                  MIGRATE_BACKUP=f"file://{backups}")
    release(mdir, 1)
    deploy(run_job, env)
    (manifest,) = backups.glob("*.manifest.json")
    data = json.loads(manifest.read_text())
    data["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    res = run_job("undo", "--restore", "--yes", env=env)
    assert res.returncode == 7, res.stderr
    assert "is not the backup the run took" in summary(res.stderr)["message"]
    assert len(applied_ids(database_url)) == 2


def test_undo_prompt_names_the_run_the_database_and_what_changes(database_url, run_job,
                                                                 tmp_path):
    mdir = tmp_path / "m"
    env = env_for(database_url, mdir, USER="alice", MIGRATE_IMAGE="shop/app-migrations:1.4.2")
    release(mdir, 1)
    run_id = deploy(run_job, env)
    code, screen = run_on_tty("undo", env={**env, "USER": "bob"}, answer="no")
    assert code == 2, screen
    assert f"undo run {run_id[:8]} (run, " in screen
    assert "by alice@" in screen and "image shop/app-migrations:1.4.2" in screen
    assert "it applied: 0001_t1, 0002_t2" in screen
    assert "1. 0002_t2" in screen and "2. 0001_t1" in screen and "database: postgres@" in screen
    assert len(applied_ids(database_url)) == 2


def test_history_lists_the_runs_newest_first(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = env_for(database_url, mdir, MIGRATE_IMAGE="shop/migrations:7")
    release(mdir, 1)
    write(mdir, "0003_post.sql", "-- depends: 0002_t2\n-- phase: post\nCREATE TABLE p (id int);\n")
    write(mdir, "0003_post.rollback.sql", "DROP TABLE p;\n")
    deploy(run_job, env, "--phase", "pre")
    deploy(run_job, env, "--phase", "post")
    assert run_job("rollback", "--yes", env=env).returncode == 0
    write(mdir, "0004_bad.sql", "-- depends: 0003_post\n-- phase: post\nSELECT 1/0;\n")
    assert run_job("run", env=env).returncode == 8
    res = run_job("history", env=env)  # stdout is a pipe: JSON
    assert res.returncode == 0, res.stderr
    runs = json.loads(res.stdout)["runs"]
    assert [(r["command"], r["phase"], r["exit_code"]) for r in runs] == [
        ("run", "all", 8), ("rollback", None, 0), ("run", "post", 0), ("run", "pre", 0)]
    assert [r["id"] for r in runs] == list(reversed(run_ids(database_url)))
    failed, rolled, post, pre = runs
    assert failed["outcome"] == "migration_failed" and "0004_bad" in failed["message"]
    assert [a["id"] for a in failed["applied"]] == ["0003_post"]  # re-applied before 0004 failed
    assert rolled["reverted"] == ["0003_post"]
    assert [a["id"] for a in pre["applied"]] == ["0001_t1", "0002_t2"]
    assert post["image"] == "shop/migrations:7" and post["duration_s"] >= 0
    assert pre["started_at_utc"].endswith("Z") and pre["user"]
    limited = json.loads(run_job("history", "--limit", "2", env=env).stdout)["runs"]
    assert [r["id"] for r in limited] == [failed["id"], rolled["id"]]


def test_history_on_a_terminal_is_a_table(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = env_for(database_url, mdir, MIGRATE_IMAGE="registry.example.com/team/shop-migrations:"
                                                    "2026.11.26-abcdef0")
    release(mdir, 1)
    run_id = deploy(run_job, env)
    code, screen = run_on_tty("history", env=env)
    assert code == 0, screen
    lines = [line for line in screen.splitlines() if not line.startswith("{")]
    header = next(i for i, line in enumerate(lines) if line.startswith("RUN "))
    for column in ("WHEN (UTC)", "COMMAND", "PHASE", "OUTCOME", "EXIT", "TOOK", "USER", "IMAGE",
                   "CHANGES"):
        assert column in lines[header]
    row = lines[header + 1]
    assert row.startswith(run_id[:8]) and " run " in row and " applied " in row
    assert "+0001_t1, +0002_t2" in row
    # A long image keeps its end, the tag that tells releases apart.
    assert "…grations:2026.11.26-abcdef0" in row and "registry.example.com" not in row
    assert all(len(line) <= 160 for line in lines)


def test_old_run_table_reads_and_gains_the_new_columns(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = env_for(database_url, mdir)
    release(mdir, 1)
    deploy(run_job, env)
    query(database_url, "ALTER TABLE _migrate_job_run DROP COLUMN phase, DROP COLUMN backup_uri, "
                        "DROP COLUMN backup_sha256, DROP COLUMN backup_bytes, "
                        "DROP COLUMN reverted, DROP COLUMN undoes, DROP COLUMN message")
    old = json.loads(run_job("history", env=env).stdout)["runs"]
    assert len(old) == 1 and old[0]["phase"] is None and old[0]["command"] == "run"
    release(mdir, 2)
    deploy(run_job, env, "--phase", "pre")
    runs = json.loads(run_job("history", env=env).stdout)["runs"]
    assert [r["phase"] for r in runs] == ["pre", None]
