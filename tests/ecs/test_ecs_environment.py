"""The ECS task definition names its environment: the migration task stamps and guards the
database with it (MIGRATE_ENVIRONMENT)."""

from __future__ import annotations

from ecs_testkit import ECS_DIR, PLACEHOLDER_VALUES, render


def test_taskdef_passes_the_environment_name() -> None:
    taskdef = render(ECS_DIR / "taskdef.json", {**PLACEHOLDER_VALUES, "ENVIRONMENT": "staging"})
    [container] = taskdef["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["MIGRATE_ENVIRONMENT"] == "staging"
