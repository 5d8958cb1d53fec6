"""The settings of issue 14 are validated up front, naming the variable."""

from __future__ import annotations

import pytest

from job.errors import ConfigError
from job.settings import load


def test_drift_and_environment_settings_parse() -> None:
    s = load({"MIGRATE_ENVIRONMENT": "production", "MIGRATE_ON_SCHEMA_DRIFT": "WARN",
              "MIGRATE_MANAGED_SCHEMAS": " public , billing,public"})
    assert s.environment == "production"
    assert s.on_schema_drift == "warn"
    assert s.managed_schemas == ("public", "billing")


def test_defaults_fail_on_drift_and_name_no_environment() -> None:
    s = load({})
    assert (s.environment, s.on_schema_drift, s.managed_schemas) == (None, "fail", ())


@pytest.mark.parametrize(("name", "value"), [
    ("MIGRATE_ENVIRONMENT", "prod uction"),
    ("MIGRATE_ENVIRONMENT", "x" * 64),
    ("MIGRATE_ON_SCHEMA_DRIFT", "ignore"),
    ("MIGRATE_MANAGED_SCHEMAS", "public,,app"),
])
def test_bad_values_name_their_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load({name: value})
