# ruff: noqa: E501  (SQL cases read best on one line each)
"""Real-world migration histories (procrastinate, graphile-worker; MIT, pinned packages
installed by `make test-tools`): a fresh database runs them with no blocking finding and ends
with the schema one psql session produces; a populated one still blocks the genuinely
destructive migrations with the right rule, and the in-file approval releases them."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.core.helpers import env_for, events, query, summary
from tests.corpora.convert import HISTORIES, TOOLS, History, write

LINE_LIMIT = 16 * 1024


@dataclass(frozen=True)
class Populated:
    upto: int  # migrations applied before the data goes in
    rows: str  # SQL putting rows into tables later migrations drop or reshape
    blocks: list[tuple[str, str]]  # (migration id, rule) that must block
    kept: str  # a query whose answer shows the approved run kept what it should


POPULATED = {
    "procrastinate": Populated(
        upto=2,
        rows="INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, started_at) "
             "VALUES ('q', 't', '{}', 'todo', now());\n"
             "INSERT INTO procrastinate_version (version) VALUES ('0.4.0');",
        blocks=[("0003_00_05_00_02_drop_started_at_column", "DL02"),  # a column with values
                ("0004_00_05_00_03_drop_procrastinate_version_table", "DL01"),  # a table with rows
                ("0030_03_00_00_01_pre_cancel_notification", "DL06"),  # UPDATEs existing jobs
                ("0031_03_00_00_50_post_cancel_notification", "DL06"),
                ("0031_03_00_00_50_post_cancel_notification", "DL08")],  # status TYPE .. USING
        kept="SELECT count(*) FROM procrastinate_jobs",
    ),
    "graphile-worker": Populated(
        upto=11,
        rows="SELECT graphile_worker.add_job('hello', '{\"n\": 1}');",
        # int -> smallint on columns with values, then the old table (with its rows) dropped
        blocks=[("0011_graphile_worker", "DL08")] * 3 + [("0011_graphile_worker", "DL01")],
        kept="SELECT count(*) FROM graphile_worker.jobs",
    ),
}


@pytest.fixture(params=sorted(HISTORIES))
def history(request: pytest.FixtureRequest) -> History:
    if not TOOLS.is_dir():
        pytest.fail(f"{TOOLS} missing: run `make test-tools` (tests/corpora/install.sh)")
    h = HISTORIES[request.param]()
    assert "MIT" in h.licence.read_text(encoding="utf-8")
    return h


def _bounded(stderr: str) -> None:
    assert max(len(line.encode()) for line in stderr.splitlines()) <= LINE_LIMIT


def _schema(pg_server, url: str) -> str:
    out = subprocess.run(
        [str(Path(pg_server.bin_dir) / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
         "-T", "_yoyo*", "-T", "_migrate_job*", "-T", "yoyo_lock", "-d", url],
        capture_output=True, text=True, check=True)
    keep = []
    for line in out.stdout.splitlines():
        if not line.strip() or line.startswith(("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")):
            continue
        keep.append(line)
    return "\n".join(keep)


def test_fresh_database_runs_the_history_with_no_blocking_finding_and_psqls_schema(history, pg_server, database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    ids = write(history, mdir)
    env = {**env_for(database_url, mdir), "MIGRATE_LOG_FORMAT": "json"}
    plan = run_job("plan", "--json", env=env, timeout=600)
    assert plan.returncode == 0, plan.stderr[-3000:]
    res = run_job("run", env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    _bounded(plan.stderr)
    _bounded(res.stderr)
    s = summary(res.stderr)
    assert [f for f in s.get("findings", []) if f["blocking"]] == []
    assert [a["id"] for a in s["applied"]] == ids
    # The same files through one psql session.
    other = pg_server.create_database()
    try:
        files = [str(mdir / f"{i}.sql") for i in ids]
        args = [str(Path(pg_server.bin_dir) / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", other]
        for f in files:  # each transactional file in its own transaction, as the tools do
            transactional = "-- transactional: false" not in Path(f).read_text()
            args += (["-c", "BEGIN", "-f", f, "-c", "COMMIT"] if transactional else ["-f", f])
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        assert _schema(pg_server, database_url) == _schema(pg_server, other)
    finally:
        pg_server.drop_database(other)


def _with_approvals(path: Path, rules: list[str]) -> None:
    text = path.read_text()
    approvals = "".join(f'-- migrate-job: approve {r} "reviewed: corpus test"\n' for r in rules)
    path.write_text(approvals + text)


def test_populated_database_blocks_destructive_migrations_until_approved(history, database_url, run_job, tmp_path):
    case = POPULATED[history.name]
    first = tmp_path / "first"
    write(history, first, upto=case.upto)
    env = {**env_for(database_url, first), "MIGRATE_LOG_FORMAT": "json"}
    assert run_job("run", env=env, timeout=600).returncode == 0
    query(database_url, case.rows)
    before = query(database_url, case.kept)
    mdir = tmp_path / "all"
    write(history, mdir)
    env = {**env, "MIGRATE_MIGRATIONS_DIR": str(mdir)}
    res = run_job("run", env=env, timeout=600)
    assert res.returncode == 6, res.stderr[-3000:]
    _bounded(res.stderr)
    blocking = [(f["migration"], f["rule"]) for f in summary(res.stderr)["findings"] if f["blocking"]]
    assert blocking == case.blocks
    assert all(f["data"] == "rows" for f in summary(res.stderr)["findings"] if f["blocking"])
    assert query(database_url, case.kept) == before  # nothing ran
    by_file: dict[str, list[str]] = {}
    for mid, rule in case.blocks:
        if rule not in by_file.setdefault(mid, []):
            by_file[mid].append(rule)
    for mid, rules in by_file.items():
        _with_approvals(mdir / f"{mid}.sql", rules)
    res = run_job("run", env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    approved = [e for e in events(res.stderr) if e["event"] == "safety.finding" and e.get("approved_by")]
    assert {(e["migration"], e["rule"]) for e in approved} == set(case.blocks)
    if history.name == "graphile-worker":
        assert query(database_url, case.kept) == [(1,)]  # the job moved to the new table
    assert re.search(r"applied", summary(res.stderr)["outcome"])
