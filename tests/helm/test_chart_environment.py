"""The chart takes the environment name (and the drift settings) as values, and the rendered Job
stamps and guards a real database with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python
import psycopg
import pytest
from helmchart import SCENARIOS, render
from test_chart_runs_job import MIGRATIONS, container_env


def _with(settings: dict[str, Any]) -> dict[str, Any]:
    return {**SCENARIOS["existing-secret-env"], "settings": settings}


def _configmap(values: dict[str, Any]) -> dict[str, str]:
    data: dict[str, str] = render(values).one("ConfigMap")["data"]
    return data


def test_defaults_name_no_environment_and_fail_on_drift() -> None:
    data = _configmap(SCENARIOS["existing-secret-env"])
    assert "MIGRATE_ENVIRONMENT" not in data
    assert "MIGRATE_MANAGED_SCHEMAS" not in data
    assert data["MIGRATE_ON_SCHEMA_DRIFT"] == "fail"


def test_environment_and_drift_settings_reach_the_configmap() -> None:
    data = _configmap(_with({"environment": "production", "onSchemaDrift": "warn",
                             "managedSchemas": ["public", "billing"]}))
    assert data["MIGRATE_ENVIRONMENT"] == "production"
    assert data["MIGRATE_ON_SCHEMA_DRIFT"] == "warn"
    assert data["MIGRATE_MANAGED_SCHEMAS"] == "public,billing"


@pytest.mark.parametrize(("settings", "where"), [
    ({"environment": "prod uction"}, "environment"),
    ({"environment": "-staging"}, "environment"),
    ({"onSchemaDrift": "ignore"}, "onSchemaDrift"),
    ({"managedSchemas": "public"}, "managedSchemas"),
    ({"managedSchemas": ["public,app"]}, "managedSchemas"),
])
def test_schema_rejects_bad_environment_and_drift_values(settings: dict[str, Any],
                                                         where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        render(_with(settings))


def test_rendered_jobs_stamp_and_guard_the_database(database_url: str, run_job: Any,
                                                    tmp_path: Path) -> None:
    def job_env(environment: str) -> dict[str, str]:
        env = container_env(render(_with({"environment": environment})),
                            {("shop-db", "url"): database_url})
        env["MIGRATE_MIGRATIONS_DIR"] = str(MIGRATIONS)
        env["MIGRATE_TERMINATION_LOG"] = str(tmp_path / "termination-log")
        return env

    done = run_job("run", env=job_env("production"), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT name FROM _migrate_job_environment").fetchone()
    assert row == ("production",)

    staging = run_job("run", env=job_env("staging"), timeout=120)
    assert staging.returncode == 5
    assert ("this database is stamped 'production'; this run says 'staging'"
            in (tmp_path / "termination-log").read_text())
