"""The chart and the CLI agree: the rendered Job's command and environment, run as a local
process against a real PostgreSQL, migrate the database.

The container's effective argv is the image ENTRYPOINT (read from the Dockerfile) plus the Job's
args, exactly as the kubelet would build it; its environment is the Job's env with the ConfigMap
resolved from the same render and the existing Secret's key resolved to the test database URL.
Only two paths are relocated from the image layout to this checkout: the migrations directory
and the termination-log file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from helmchart import REPO, SCENARIOS, Rendered, render

DOCKERFILE = REPO / "Dockerfile"
MIGRATIONS = REPO / "migrations"


def image_entrypoint() -> list[str]:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            entry = json.loads(line.removeprefix("ENTRYPOINT "))
            assert isinstance(entry, list)
            return [str(x) for x in entry]
    raise AssertionError("the Dockerfile has no exec-form ENTRYPOINT")


def container_argv(r: Rendered) -> list[str]:
    """What the kubelet runs: `command` replaces the ENTRYPOINT, `args` replace CMD."""
    c = r.container
    return list(c.get("command") or image_entrypoint()) + list(c.get("args") or [])


def container_env(r: Rendered, secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """The container's environment: envFrom first, then env entries (which win), like the
    kubelet. Every reference must resolve; an unresolvable one fails the test."""
    configmaps = {cm["metadata"]["name"]: cm["data"] for cm in r.of_kind("ConfigMap")}
    for secret in r.of_kind("Secret"):  # the chart's own Secret (inline values)
        for key, value in secret["stringData"].items():
            secrets[(secret["metadata"]["name"], key)] = value
    env: dict[str, str] = {}
    for src in r.container.get("envFrom", []):
        env.update(configmaps[src["configMapRef"]["name"]])
    for entry in r.container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref: dict[str, Any] = entry["valueFrom"]
        if "secretKeyRef" in ref:
            key = (ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            env[entry["name"]] = secrets[key]
        else:
            cm_ref = ref["configMapKeyRef"]
            env[entry["name"]] = configmaps[cm_ref["name"]][cm_ref["key"]]
    return env


def migration_ids() -> list[str]:
    return sorted(p.stem for p in MIGRATIONS.glob("*.sql")
                  if not p.name.endswith(".rollback.sql") and not p.name.startswith("post-apply"))


def test_rendered_job_migrates_the_database(database_url: str, run_job: Any,
                                            tmp_path: Path) -> None:
    ids = migration_ids()
    if not ids:
        pytest.fail(f"{MIGRATIONS} holds no migrations to apply")
    r = render(SCENARIOS["existing-secret-env"])

    argv = container_argv(r)
    # tini only forwards signals and reaps children; the program it runs is migrate-job.
    if argv[:2] == ["tini", "--"]:
        argv = argv[2:]
    assert argv[0] == "migrate-job", argv
    args = argv[1:]
    assert args == ["run"]

    env = container_env(r, {("shop-db", "url"): database_url})
    assert env["MIGRATE_DATABASE_URL"] == database_url
    assert env["MIGRATE_MIGRATIONS_DIR"] == "/app/migrations"
    assert env["MIGRATE_TERMINATION_LOG"] == "/dev/termination-log"
    termination_log = tmp_path / "termination-log"
    env["MIGRATE_MIGRATIONS_DIR"] = str(MIGRATIONS)
    env["MIGRATE_TERMINATION_LOG"] = str(termination_log)

    done = run_job(*args, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    lines = termination_log.read_text().splitlines()
    assert len(lines) == 1, lines
    summary = json.loads(lines[0])
    assert summary["exit_code"] == 0
    assert summary["command"] == "run"
    password = urlsplit(database_url).password
    assert password and password not in lines[0], "the summary leaks the database password"
    applied = json.dumps(summary["applied"])
    for mid in ids:
        assert mid in applied, (mid, summary["applied"])

    # The database is readable by the yoyo CLI: its own table records every migration.
    with psycopg.connect(database_url) as conn:
        recorded = {row[0] for row in conn.execute("SELECT migration_id FROM _yoyo_migration")}
    assert set(ids) <= recorded

    # Argo CD runs a PreSync hook on every sync: the same Job again is a no-op success.
    termination_log.unlink()
    again = run_job(*args, env=env, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads(termination_log.read_text())
    assert second["exit_code"] == 0
    assert not second["applied"]


def test_rendered_job_with_libpq_parameters_and_inline_password(database_url: str, run_job: Any,
                                                                 tmp_path: Path) -> None:
    """The PG* variables of the ConfigMap and PGPASSWORD from the chart's own Secret are the
    ones the CLI reads (no URL anywhere)."""
    url = urlsplit(database_url)
    r = render({"database": {"host": url.hostname, "port": url.port, "name": url.path[1:],
                             "user": url.username, "password": url.password,
                             "sslmode": "disable"}})
    env = container_env(r, {})
    assert "MIGRATE_DATABASE_URL" not in env and env["PGPASSWORD"] == url.password
    env["MIGRATE_MIGRATIONS_DIR"] = str(MIGRATIONS)
    env["MIGRATE_TERMINATION_LOG"] = str(tmp_path / "termination-log")
    done = run_job(*r.container["args"], env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "termination-log").read_text())
    assert summary["exit_code"] == 0
    assert [a["id"] if isinstance(a, dict) else a for a in summary["applied"]] == migration_ids()
