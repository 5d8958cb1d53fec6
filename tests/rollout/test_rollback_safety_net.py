"""Rollback with a safety net: every script of the chain is checked (exists, parses, can run in
its migration's transaction mode, gated) before the first one runs; the prompt names the
database and the chain; a backup first when configured; `--count` beyond what is applied is an
error; `-- rollback: nothing to undo` marks an intentionally empty script."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.core.helpers import applied_ids, env_for, query, scalar, summary, table_exists, write
from tests.rollout.pty_run import run_on_tty

IDS = ["0001_a", "0002_b", "0003_c"]


def chain(mdir: Path) -> None:
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    write(mdir, "0001_a.rollback.sql", "DROP TABLE a;\n")
    write(mdir, "0002_b.sql", "-- depends: 0001_a\nCREATE TABLE b (id bigint);\n"
                              "CREATE INDEX b_id ON b (id);\n")
    write(mdir, "0002_b.rollback.sql", "DROP INDEX b_id;\nDROP TABLE b;\n")
    write(mdir, "0003_c.sql", "-- depends: 0002_b\nCREATE TABLE c (id bigint);\n")
    write(mdir, "0003_c.rollback.sql", "DROP TABLE c;\n")


def applied_chain(database_url: str, run_job, tmp_path: Path, **extra: str
                  ) -> tuple[Path, dict[str, str]]:
    mdir = tmp_path / "m"
    chain(mdir)
    env = env_for(database_url, mdir, **extra)
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert applied_ids(database_url) == IDS
    return mdir, env


def untouched(database_url: str) -> bool:
    return applied_ids(database_url) == IDS and all(
        table_exists(database_url, t) for t in ("a", "b", "c")) and scalar(
        database_url, "SELECT count(*) FROM _yoyo_log WHERE operation = 'rollback'") == 0


BROKEN = {
    # kind: (migration whose script breaks, script text or None to delete it, expected in message)
    "syntax-error-oldest": ("0001_a", "DROP TABLE a;\nDROP TABLEE nope;\n",
                            ["0001_a.rollback.sql:2:", "AN01", 'syntax error at or near "TABLEE"']),
    "concurrently-in-transactional-middle": (
        "0002_b", "DROP INDEX CONCURRENTLY b_id;\nDROP TABLE b;\n",
        ["0002_b.rollback.sql:1:", "TX01", "DROP INDEX CONCURRENTLY b_id cannot run inside a "
         "transaction", "drop CONCURRENTLY in the rollback script, or mark 0002_b.sql "
         "`-- transactional: false`", "accept-changes 0002_b"]),
    "missing-newest": ("0003_c", None, ["0003_c.rollback.sql", "no rollback script for 0003_c",
                                        "-- rollback: nothing to undo"]),
    "comment-only-middle": ("0002_b", "-- TODO\n", ["0002_b.rollback.sql", "no statement",
                                                    "-- rollback: nothing to undo"]),
    "psql-meta-command-oldest": ("0001_a", "\\set ON_ERROR_STOP on\nDROP TABLE a;\n",
                                 ["0001_a.rollback.sql:1:", "AN02"]),
    "directive-in-rollback-middle": ("0002_b", "-- transactional: false\nDROP TABLE b;\n",
                                     ["0002_b.rollback.sql:1:", "has no effect in a rollback "
                                      "script", "transaction mode of 0002_b.sql"]),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_script_anywhere_in_the_chain_rolls_back_nothing(database_url, run_job,
                                                                  tmp_path, kind):
    mdir, env = applied_chain(database_url, run_job, tmp_path)
    mid, text, expected = BROKEN[kind]
    script = mdir / f"{mid}.rollback.sql"
    if text is None:
        script.unlink()
    else:
        script.write_text(text)
    res = run_job("rollback", "--count", "3", "--yes", env=env)
    assert res.returncode == 2, res.stderr
    s = summary(res.stderr)
    assert s["message"].startswith("nothing rolled back: 1 problem(s) in the rollback chain")
    for needle in expected:
        assert needle in s["message"], (needle, s["message"])
    assert s["error"]["migration"] == mid and s["error"]["file"] == str(script)
    assert s.get("rolled_back", []) == []
    assert untouched(database_url)


def test_every_problem_of_the_chain_is_reported_at_once(database_url, run_job, tmp_path):
    mdir, env = applied_chain(database_url, run_job, tmp_path)
    (mdir / "0003_c.rollback.sql").unlink()
    (mdir / "0001_a.rollback.sql").write_text("DROP TABL a;\n")
    res = run_job("rollback", "--count", "3", "--yes", env=env)
    assert res.returncode == 2
    problems = summary(res.stderr)["error"]["problems"]
    assert [(p["migration"], p["line"]) for p in problems] == [("0003_c", None), ("0001_a", 1)]
    assert untouched(database_url)


def test_a_script_that_would_drop_data_needs_an_approval(database_url, run_job, tmp_path):
    mdir, env = applied_chain(database_url, run_job, tmp_path)
    query(database_url, "INSERT INTO c VALUES (1), (2)")
    res = run_job("rollback", "--yes", env=env)
    assert res.returncode == 6, res.stderr
    message = summary(res.stderr)["message"]
    assert "DL01 in " + str(mdir / "0003_c.rollback.sql") + ":1" in message
    assert "--allow-destructive" in message
    assert untouched(database_url)
    # An empty table has nothing to lose: the same script on b passes without an approval.
    ok = run_job("rollback", "--to", "0001_a", "--yes", "--allow-destructive", env=env)
    assert ok.returncode == 0, ok.stderr
    assert applied_ids(database_url) == ["0001_a"]


def test_an_approval_in_the_rollback_script_lets_it_run(database_url, run_job, tmp_path):
    mdir, env = applied_chain(database_url, run_job, tmp_path)
    query(database_url, "INSERT INTO c VALUES (1)")
    (mdir / "0003_c.rollback.sql").write_text(
        '-- migrate-job: approve DL01 "c only held test rows"\nDROP TABLE c;\n')
    res = run_job("rollback", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    assert applied_ids(database_url) == IDS[:2] and not table_exists(database_url, "c")


def test_nothing_to_undo_directive_forgets_the_record_only(database_url, run_job, tmp_path):
    mdir, env = applied_chain(database_url, run_job, tmp_path)
    (mdir / "0003_c.rollback.sql").write_text(
        "-- rollback: nothing to undo\n-- (c is harmless and kept)\n")
    res = run_job("rollback", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    assert applied_ids(database_url) == IDS[:2]
    assert table_exists(database_url, "c")
    assert summary(res.stderr)["rolled_back"][0]["id"] == "0003_c"


def test_nothing_to_undo_with_statements_is_contradictory(database_url, run_job, tmp_path):
    mdir, env = applied_chain(database_url, run_job, tmp_path)
    (mdir / "0003_c.rollback.sql").write_text("-- rollback: nothing to undo\nDROP TABLE c;\n")
    res = run_job("rollback", "--yes", env=env)
    assert res.returncode == 2
    assert "0003_c.rollback.sql:1: says `-- rollback: nothing to undo` but has 1 statement(s)" \
        in summary(res.stderr)["message"]
    assert untouched(database_url)


@pytest.mark.parametrize("count", ["4", "0"])
def test_count_beyond_what_is_applied_is_an_error(database_url, run_job, tmp_path, count):
    _, env = applied_chain(database_url, run_job, tmp_path)
    res = run_job("rollback", "--count", count, "--yes", env=env)
    assert res.returncode == 2
    message = summary(res.stderr)["message"]
    assert (f"--count {count}: only 3 migration(s) are applied" in message if count == "4"
            else "--count 0: must be at least 1" in message)
    assert untouched(database_url)


def test_non_transactional_migration_rolls_back_concurrently(database_url, run_job, tmp_path):
    """The rollback runs in its migration's mode: a non-transactional migration's rollback may
    use DROP INDEX CONCURRENTLY."""
    mdir, env = applied_chain(database_url, run_job, tmp_path)
    write(mdir, "0004_idx.sql", "-- depends: 0003_c\n-- transactional: false\n"
                                "CREATE INDEX CONCURRENTLY c_id ON c (id);\n")
    write(mdir, "0004_idx.rollback.sql", "DROP INDEX CONCURRENTLY c_id;\n")
    assert run_job("run", env=env).returncode == 0
    res = run_job("rollback", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    assert not table_exists(database_url, "c_id") and applied_ids(database_url) == IDS


def test_backup_is_taken_before_the_rollback_when_configured(pg_server, database_url, run_job,
                                                            tmp_path):
    backups = tmp_path / "backups"
    _, env = applied_chain(database_url, run_job, tmp_path)
    env["MIGRATE_BACKUP"] = f"file://{backups}"
    env["MIGRATE_PG_BIN_DIR"] = str(pg_server.bin_dir)
    res = run_job("rollback", "--count", "2", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    s = summary(res.stderr)
    dump = Path(urlsplit(s["backup"]["uri"]).path)
    assert dump.parent == backups and dump.stat().st_size == s["backup"]["bytes"]
    manifest = json.loads(dump.with_name(dump.name.replace(".dump", ".manifest.json"))
                          .read_text())
    # Taken before anything was rolled back: it still records the whole chain as applied.
    assert manifest["applied"] == IDS and manifest["sha256"] == s["backup"]["sha256"]
    assert applied_ids(database_url) == ["0001_a"]
    # The backup holds what the rollback removed: restoring it brings b and c back.
    restored = run_job("restore", s["backup"]["uri"], "--yes", env=env)
    assert restored.returncode == 0, restored.stderr
    assert applied_ids(database_url) == IDS and table_exists(database_url, "c")


def test_no_backup_when_a_preflight_problem_stops_the_rollback(database_url, run_job, tmp_path):
    backups = tmp_path / "backups"
    mdir, env = applied_chain(database_url, run_job, tmp_path)
    (mdir / "0002_b.rollback.sql").unlink()
    env["MIGRATE_BACKUP"] = f"file://{backups}"
    assert run_job("rollback", "--count", "2", "--yes", env=env).returncode == 2
    assert not backups.exists() or not list(backups.glob("*.dump"))


def test_prompt_names_the_database_and_the_chain_in_order(database_url, run_job, tmp_path):
    _, env = applied_chain(database_url, run_job, tmp_path)
    database = urlsplit(database_url).path.lstrip("/")
    code, screen = run_on_tty("rollback", "--count", "2", env=env, answer="no")
    assert code == 2, screen
    assert untouched(database_url)
    prompt = screen[screen.index("database:"):]
    assert f"database: postgres@127.0.0.1:{urlsplit(database_url).port}/{database}" in prompt
    first, second = prompt.index("1. 0003_c"), prompt.index("2. 0002_b")
    assert first < second < prompt.index("roll back 2 migration(s) on ")
    assert "backup: none (set MIGRATE_BACKUP to take one first)" in prompt
    code, screen = run_on_tty("rollback", "--count", "2", env=env, answer="yes")
    assert code == 0, screen
    assert applied_ids(database_url) == ["0001_a"]


def test_without_yes_and_no_terminal_nothing_connects(run_job, tmp_path):
    env = env_for("postgresql://nobody:x@127.0.0.1:1/nothing", tmp_path, MIGRATE_DB_WAIT="30s")
    for args in (["rollback"], ["undo"], ["undo", "--restore"]):
        res = run_job(*args, env=env, timeout=20)
        assert res.returncode == 2, res.stderr
        assert "refusing without --yes (stdin is not a terminal)" in res.stderr
        assert "database.waiting" not in res.stderr
