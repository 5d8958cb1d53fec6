"""values.schema.json covers every value and rejects typos and wrong types at install time;
the chart README documents every value."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python
import pytest
import yaml
from helmchart import CHART_DIR, SCENARIOS, render

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
README = (CHART_DIR / "README.md").read_text()

# Maps whose keys are the user's (labels, annotations, resource names, free-form objects).
FREE_FORM = {"global", "job.annotations", "job.labels", "pod.annotations", "pod.labels",
             "pod.nodeSelector", "pod.affinity", "resources.requests", "resources.limits",
             "serviceAccount.annotations", "serviceAccount.labels"}


def value_paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every key path of values.yaml, down to leaves and free-form maps."""
    if isinstance(node, dict) and prefix not in FREE_FORM:
        for key, child in node.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from value_paths(child, path)


def schema_paths(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, child in node.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        yield path, child
        yield from schema_paths(child, path)


def test_schema_describes_exactly_the_values() -> None:
    assert set(value_paths(VALUES)) == {p for p, _ in schema_paths(SCHEMA)}


def test_every_schema_object_rejects_unknown_keys() -> None:
    assert SCHEMA["additionalProperties"] is False
    for path, node in schema_paths(SCHEMA):
        if node.get("type") == "object" and path not in FREE_FORM:
            assert node.get("additionalProperties") is False, path


def test_every_value_has_a_type_and_description() -> None:
    for path, node in schema_paths(SCHEMA):
        assert "type" in node, path
        if not path.startswith("resources."):
            assert node.get("description"), path


def test_defaults_pass_the_schema() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(VALUES)
        for values in SCENARIOS.values():
            chart.validate_schema(chart.merge_values(values))


BASE = SCENARIOS["existing-secret-env"]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("bad,where", [
    ({"databse": {}}, "databse"),                                        # top-level typo
    ({"job": {"activeDeadline": 100}}, "activeDeadline"),                # nested typo
    ({"database": {"existingSecret": {"name": "db", "nmae": "x"}}}, "nmae"),
    ({"pod": {"securityContext": {"runAsUser": 0}}}, "securityContext"),  # not a value here
    ({"job": {"activeDeadlineSeconds": "240"}}, "activeDeadlineSeconds"),  # wrong type
    ({"job": {"activeDeadlineSeconds": 0}}, "activeDeadlineSeconds"),
    ({"hooks": {"enabled": "false"}}, "enabled"),
    ({"pod": {"runAsUser": 0}}, "runAsUser"),                            # root
    ({"settings": {"txMode": "some"}}, "txMode"),                        # enum
    ({"settings": {"logLevel": "verbose"}}, "logLevel"),
    ({"settings": {"lockWait": "ten minutes"}}, "lockWait"),             # duration pattern
    ({"database": {"secretSource": "vault"}}, "secretSource"),
    ({"identity": {"azure": {"clientId": "my-identity"}}}, "clientId"),  # not a GUID
    ({"identity": {"aws": {"roleArn": "shop-migrate"}}}, "roleArn"),
    ({"backup": {"uri": "ftp://host/x"}}, "uri"),
    ({"backup": {"volume": {"type": "pvc"}}}, "type"),
    ({"image": {"pullPolicy": "always"}}, "pullPolicy"),
    ({"tmp": {"sizeLimit": "lots"}}, "sizeLimit"),
    ({"database": {"url": "mysql://u:p@h/d"}}, "url"),
    ({"argo": {"hookDeletePolicy": "OnSuccess"}}, "hookDeletePolicy"),
    ({"extraEnv": [{"value": "no name"}]}, "name"),
])
def test_schema_rejects_bad_values(bad: dict[str, Any], where: str) -> None:
    values = deep_merge(BASE, bad)
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        render(values)


# --- the chart README --------------------------------------------------------------------------


def readme_table_keys() -> set[str]:
    values_section = README.split("\n## Values\n", 1)[1]
    return set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", values_section, flags=re.M))


def test_readme_values_table_lists_every_value() -> None:
    leaves = {p for p in value_paths(VALUES)
              if not isinstance(_get(VALUES, p), dict) or p in FREE_FORM}
    assert leaves - readme_table_keys() == set()
    assert readme_table_keys() - set(value_paths(VALUES)) == set()


def _get(node: Any, path: str) -> Any:
    for part in path.split("."):
        node = node[part]
    return node


def test_readme_timeout_examples_leave_room_for_the_deadline() -> None:
    deadline = VALUES["job"]["activeDeadlineSeconds"] + VALUES["pod"][
        "terminationGracePeriodSeconds"]
    timeouts = re.findall(r"--timeout[ =](\d+)(m|s)", README)
    assert timeouts, "the README shows no --timeout"
    for number, unit in timeouts:
        assert int(number) * (60 if unit == "m" else 1) > deadline
    # How to read a failed hook: the Job's log and the container's termination message.
    assert "logs job/shop-migrate-job" in README
    assert "state.terminated" in README and "termination message" in README
