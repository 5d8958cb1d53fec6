"""The one contract every importer passes (golang-migrate's database/testing, for importers).

For each tool: a database built by that tool (really run where npm ships it) -> `import` ->
`run` finds nothing pending and applies a new migration on top; `status` shows the imported
history; a fresh database replays the imported files (or the baseline) to the same schema; what
the old tool recorded is marked and nothing else; the old tool's table is left as it was; the
command refuses without --yes off a terminal and is recorded in the run history.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from job.adopt import importer
from tests.adopt.helpers import cli_env, schema_of
from tests.adopt.scenarios import SCENARIOS, Scenario
from tests.core.helpers import applied_ids, query, scalar, summary

pytestmark = pytest.mark.usefixtures("node_tools")


def _table_digest(url: str, table: str) -> Any:
    return scalar(url, f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "
                       f"FROM {table} t")


def _files(mdir: Path) -> list[str]:
    return sorted(p.name for p in mdir.glob("*.sql")) if mdir.exists() else []


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_imported_history_is_marked_runs_on_top_and_replays_to_the_same_schema(
        scenario: Scenario, database_url: str, fresh_url: str, run_job: Any,
        tmp_path: Path) -> None:
    source = scenario.build(database_url, tmp_path / "work")
    table = importer(scenario.tool).default_table
    before = _table_digest(database_url, table)
    mdir = tmp_path / "migrations"
    env = cli_env(database_url, mdir)
    args = ("import", "--from", scenario.tool, "--source", str(source))

    # Off a terminal, without --yes: the mapping is shown, nothing is written or marked.
    res = run_job(*args, env=env)
    assert res.returncode == 2, res.stderr
    assert "--yes" in summary(res.stderr)["message"]
    assert "mark" in res.stdout and _files(mdir) == [] and applied_ids(database_url) == []
    res = run_job(*args, "--dry-run", env=env)
    assert res.returncode == 0, res.stderr
    assert "dry run" in res.stdout and _files(mdir) == []

    res = run_job(*args, "--yes", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    ups = [f for f in _files(mdir) if not f.endswith(".rollback.sql")]
    assert len(ups) == (3 if scenario.converts else 1), ups
    assert applied_ids(database_url) == [f[:-4] for f in ups]
    hows = {r[0] for r in query(database_url, "SELECT how FROM _migrate_job_migration")}
    assert hows == {"imported"}
    assert _table_digest(database_url, table) == before, "the old tool's table was changed"
    runs = query(database_url, "SELECT command, outcome, exit_code FROM _migrate_job_run")
    assert ("import", "success", 0) in runs

    # status shows the imported history; run finds nothing to do.
    res = run_job("status", "--json", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    status = json.loads(res.stdout)
    assert [a["id"] for a in status["applied"]] == [f[:-4] for f in ups]
    assert status["pending"] == []
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert summary(res.stderr)["outcome"] == "nothing_pending"

    # A new migration builds on the last imported one and applies on top.
    res = run_job("new", "add widgets", env=env)
    assert res.returncode == 0, res.stderr
    new_path = Path(res.stdout.split()[0])
    assert f"-- depends: {ups[-1][:-4]}" in new_path.read_text()
    new_path.write_text(new_path.read_text() + "CREATE TABLE widgets (id int);\n")
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert [a["id"] for a in summary(res.stderr)["applied"]] == [new_path.stem]

    # A fresh database gets the same schema from the imported files.
    res = run_job("run", env=cli_env(fresh_url, mdir))
    assert res.returncode == 0, res.stderr
    assert len(summary(res.stderr)["applied"]) == len(ups) + 1
    assert schema_of(fresh_url) == schema_of(database_url)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.converts], ids=str)
def test_files_the_tool_has_not_applied_stay_pending(scenario: Scenario, database_url: str,
                                                     run_job: Any, tmp_path: Path) -> None:
    source = scenario.build(database_url, tmp_path / "work", pending=True)
    mdir = tmp_path / "migrations"
    env = cli_env(database_url, mdir)
    res = run_job("import", "--from", scenario.tool, "--source", str(source), "--yes", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "pending 0004_later.sql" in res.stdout
    assert len(applied_ids(database_url)) == 3
    res = run_job("status", env=env)
    assert res.returncode == 10, res.stdout + res.stderr
    assert re.search(r"^pending\s+0004_later\s", res.stdout, re.M), res.stdout
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert [a["id"] for a in summary(res.stderr)["applied"]] == ["0004_later"]
    assert scalar(database_url, "SELECT to_regclass('later') IS NOT NULL")
