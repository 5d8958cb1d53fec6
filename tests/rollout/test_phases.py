"""Pre/post-deploy phases on a real server: `-- phase: post`, `run --phase pre|post|all`,
both orders, two releases, and the dependency rule between phases."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.core.helpers import applied_ids, env_for, events, query, summary, write

APPROVE = '-- migrate-job: approve DL02 "the new version no longer reads it"\n'


def release_1(mdir: Path) -> None:
    write(mdir, "0001_expand.sql",
          "CREATE TABLE account (id bigint PRIMARY KEY, name text, display_name text);\n")
    write(mdir, "0002_contract.sql",
          f"-- depends: 0001_expand\n-- phase: post\n{APPROVE}"
          "ALTER TABLE account DROP COLUMN name;\n")


def release_2(mdir: Path) -> None:
    write(mdir, "0003_expand.sql",
          "-- depends: 0001_expand\nALTER TABLE account ADD COLUMN email text;\n")
    write(mdir, "0004_contract.sql",
          f"-- depends: 0003_expand\n-- phase: post\n{APPROVE.replace('DL02', 'DL01')}"
          "DROP TABLE IF EXISTS legacy_account;\n")


def columns(url: str) -> list[str]:
    return [r[0] for r in query(url, "SELECT column_name FROM information_schema.columns WHERE "
                                     "table_name = 'account' ORDER BY ordinal_position")]


def applied_by(res: Any) -> list[str]:
    return [a["id"] for a in summary(res.stderr)["applied"]]


def test_pre_then_post_applies_each_phase_in_its_turn(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    release_1(mdir)
    env = env_for(database_url, mdir)
    pre = run_job("run", "--phase", "pre", env=env)
    assert pre.returncode == 0, pre.stderr
    assert applied_by(pre) == ["0001_expand"]
    assert summary(pre.stderr)["pending"] == ["0002_contract"]
    assert columns(database_url) == ["id", "name", "display_name"]  # the old version still works

    status = run_job("status", "--json", env=env)
    assert status.returncode == 10
    assert [(p["id"], p["phase"]) for p in json.loads(status.stdout)["pending"]] == [
        ("0002_contract", "post")]
    assert re.search(r"^pending\s+0002_contract\s+-\s+phase post$", run_job("status", env=env).stdout,
                     re.M)

    post = run_job("run", "--phase", "post", env=env)
    assert post.returncode == 0, post.stderr
    assert applied_by(post) == ["0002_contract"]
    assert summary(post.stderr)["pending"] == []
    assert columns(database_url) == ["id", "display_name"]
    assert run_job("status", env=env).returncode == 0


def test_post_before_pre_applies_only_independent_post_migrations(database_url, run_job,
                                                                   tmp_path):
    """The other order: a post phase with pre migrations pending applies the post migrations
    that do not need them and refuses one that does, naming the pre phase."""
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint);\n")
    write(mdir, "0002_cleanup.sql", "-- phase: post\nCREATE TABLE audit (id bigint);\n")
    env = env_for(database_url, mdir)
    post = run_job("run", "--phase", "post", env=env)
    assert post.returncode == 0, post.stderr
    assert applied_by(post) == ["0002_cleanup"]
    warned = [e for e in events(post.stderr) if e.get("event") == "run.pre_pending"]
    assert warned and warned[0]["migrations"] == ["0001_t"]
    assert applied_ids(database_url) == ["0002_cleanup"]

    write(mdir, "0003_needs_t.sql", "-- depends: 0001_t\n-- phase: post\n"
                                    "CREATE INDEX t_id ON t (id);\n")
    refused = run_job("run", "--phase", "post", env=env)
    assert refused.returncode == 2, refused.stderr
    message = summary(refused.stderr)["message"]
    assert "0003_needs_t.sql (post) depends on 0001_t (pre, pending)" in message
    assert "--phase pre" in message
    assert applied_ids(database_url) == ["0002_cleanup"]

    pre = run_job("run", "--phase", "pre", env=env)
    assert applied_by(pre) == ["0001_t"]
    assert summary(pre.stderr)["pending"] == ["0003_needs_t"]
    assert applied_by(run_job("run", "--phase", "post", env=env)) == ["0003_needs_t"]


def test_post_left_pending_by_a_release_is_applied_by_the_next_post_phase(database_url, run_job,
                                                                         tmp_path):
    mdir = tmp_path / "m"
    release_1(mdir)
    env = env_for(database_url, mdir)
    assert applied_by(run_job("run", "--phase", "pre", env=env)) == ["0001_expand"]
    # Release 1's post phase never ran (failed, or the pipeline was cancelled). Release 2:
    release_2(mdir)
    pre = run_job("run", "--phase", "pre", env=env)
    assert pre.returncode == 0, pre.stderr
    assert applied_by(pre) == ["0003_expand"]
    assert summary(pre.stderr)["pending"] == ["0002_contract", "0004_contract"]
    status = json.loads(run_job("status", "--json", env=env).stdout)
    assert {p["id"]: p["phase"] for p in status["pending"]} == {
        "0002_contract": "post", "0004_contract": "post"}
    post = run_job("run", "--phase", "post", env=env)
    assert post.returncode == 0, post.stderr
    assert applied_by(post) == ["0002_contract", "0004_contract"]
    assert columns(database_url) == ["id", "display_name", "email"]


def test_pre_migration_depending_on_a_pending_post_migration_is_refused(database_url, run_job,
                                                                       tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_base.sql", "CREATE TABLE base (id bigint);\n")
    write(mdir, "0002_retire.sql", "-- phase: post\nCREATE TABLE retired (id bigint);\n")
    write(mdir, "0003_uses_retired.sql",
          "-- depends: 0002_retire\nALTER TABLE retired ADD COLUMN x int;\n")
    env = env_for(database_url, mdir)
    for args in (["run", "--phase", "pre"], ["run"], ["plan", "--phase", "pre"]):
        res = run_job(*args, env=env)
        assert res.returncode == 2, (args, res.stderr)
        message = summary(res.stderr)["message"]
        assert "0003_uses_retired.sql (pre) depends on 0002_retire (post, pending)" in message
        assert "run --phase post" in message and "-- phase: post" in message
        assert applied_ids(database_url) == []  # nothing, not even the unrelated 0001_base
    # The way out the message names: the post phase first, then the pre phase.
    assert applied_by(run_job("run", "--phase", "post", env=env)) == ["0002_retire"]
    assert applied_by(run_job("run", "--phase", "pre", env=env)) == ["0001_base",
                                                                      "0003_uses_retired"]


def test_all_applies_pre_migrations_then_post_migrations(database_url, run_job, tmp_path):
    """`all` is exactly `pre` followed by `post`, whatever the file order."""
    mdir = tmp_path / "m"
    release_1(mdir)
    release_2(mdir)
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 0, res.stderr
    assert applied_by(res) == ["0001_expand", "0003_expand", "0002_contract", "0004_contract"]
    assert summary(res.stderr)["phase"] == "all" and summary(res.stderr)["pending"] == []


def test_phase_from_the_environment_and_a_bad_value(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    release_1(mdir)
    assert applied_by(run_job("run", env=env_for(database_url, mdir, MIGRATE_PHASE="pre"))) == [
        "0001_expand"]
    bad = run_job("run", env=env_for(database_url, mdir, MIGRATE_PHASE="later"))
    assert bad.returncode == 2
    assert "MIGRATE_PHASE='later' must be one of: pre, post, all" in bad.stderr
    # The flag wins over the environment.
    res = run_job("run", "--phase", "post", env=env_for(database_url, mdir, MIGRATE_PHASE="pre"))
    assert applied_by(res) == ["0002_contract"]


def test_bad_phase_directive_exits_2_naming_file_and_line(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "-- a comment\n-- phase: later\nCREATE TABLE a (id bigint);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 2
    assert f"{mdir / '0001_a.sql'}:2: '-- phase: later' must be pre or post" in summary(
        res.stderr)["message"]
    assert applied_ids(database_url) == []


def test_phase_directive_only_counts_above_the_first_statement(database_url, run_job, tmp_path):
    """Like yoyo's own directives: a `-- phase:` comment further down is just a comment."""
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n-- phase: post\n")
    res = run_job("run", "--phase", "pre", env=env_for(database_url, mdir))
    assert applied_by(res) == ["0001_a"]


def test_plan_shows_the_phase_and_suggests_post_for_a_contract_step(database_url, run_job,
                                                                   tmp_path):
    mdir = tmp_path / "m"
    release_1(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", "--phase", "pre", env=env).returncode == 0
    write(mdir, "0003_drop_in_pre.sql",
          f"-- depends: 0001_expand\n{APPROVE}ALTER TABLE account DROP COLUMN display_name;\n")
    text = run_job("plan", "--phase", "pre", env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "phase       pre" in lines
    assert any(line.startswith("would apply 0003_drop_in_pre  (pre, transactional, 1 statement,")
               for line in lines)
    assert not any("would apply 0002_contract" in line for line in lines)
    assert f"  hint     DL02 {mdir / '0003_drop_in_pre.sql'}:3: consider `-- phase: post` " \
           "(contract step in a pre migration)" in lines
    assert "left for --phase post: 0002_contract" in lines
    data = json.loads(run_job("plan", "--json", env=env).stdout)
    assert data["phase"] == "all"
    assert [(p["id"], p["phase"]) for p in data["pending"]] == [
        ("0003_drop_in_pre", "pre"), ("0002_contract", "post")]
    assert [(h["rule"], h["migration"]) for h in data["phase_hints"]] == [
        ("DL02", "0003_drop_in_pre")]  # not for 0002_contract: it already is a post migration
    run = run_job("run", "--phase", "pre", env=env)
    hints = [e for e in events(run.stderr) if e.get("event") == "safety.phase_hint"]
    assert [(h["rule"], h["line"], h["level"]) for h in hints] == [("DL02", 3, "info")]
