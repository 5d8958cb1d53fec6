"""ecs/taskdef.json and ecs/iam/*.json: valid for the real APIs, and exactly as narrow as
documented."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from ecs_testkit import ECS_DIR, PLACEHOLDER, REPO, render

TASK_ROLE_ACTIONS = {
    "secretsmanager:GetSecretValue",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    # The backup module reads every dump back to verify it (sha256 or restore), deletes a dump
    # that fails verification, and prunes old ones by listing the prefix (job/backup).
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:ListBucket",
}
EXECUTION_ROLE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
}
DEPLOYER_ACTIONS = {
    "ecs:DescribeTaskDefinition",
    "ecs:RunTask",
    "ecs:DescribeTasks",
    "ecs:ListTasks",
    "ecs:StopTask",
    "iam:PassRole",
    "logs:GetLogEvents",
}


def test_taskdef_validates_against_botocore_register_task_definition_model() -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    assert shape is not None
    report = ParamValidator().validate(render(ECS_DIR / "taskdef.json"), shape)
    assert not report.has_errors(), report.generate_report()


def test_validator_would_catch_a_broken_taskdef() -> None:
    """Guards the test above: the same validation rejects a wrong type and an unknown key."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    assert shape is not None
    broken = render(ECS_DIR / "taskdef.json")
    broken["containerDefinitions"][0]["stopTimeout"] = "120"
    broken["containerDefinitions"][0]["initProcessEnabled"] = True
    report = ParamValidator().validate(broken, shape)
    assert report.has_errors()
    text = report.generate_report()
    assert "stopTimeout" in text and "initProcessEnabled" in text


def test_taskdef_is_a_fargate_migration_task_without_sidecars() -> None:
    taskdef = render(ECS_DIR / "taskdef.json")
    assert taskdef["requiresCompatibilities"] == ["FARGATE"]
    assert taskdef["networkMode"] == "awsvpc"
    assert taskdef["taskRoleArn"] != taskdef["executionRoleArn"]
    assert 21 <= taskdef["ephemeralStorage"]["sizeInGiB"] <= 200
    [container] = taskdef["containerDefinitions"]  # exactly one: no sidecars
    assert container["name"] == "migrate"
    assert container["essential"] is True
    assert container["stopTimeout"] == 120  # Fargate's maximum
    assert container["linuxParameters"]["initProcessEnabled"] is True
    assert container["restartPolicy"] == {"enabled": False}
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["MIGRATE_SECRET_SOURCE"] == "aws"
    assert env["MIGRATE_AWS_SECRET_ID"].startswith("arn:aws:secretsmanager:")
    logs = container["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(logs["options"])
    # A read-only root needs a writable scratch mount for TMPDIR/backups.
    if container.get("readonlyRootFilesystem"):
        mounts = {m["containerPath"]: m for m in container["mountPoints"]}
        assert mounts["/tmp"]["sourceVolume"] in {v["name"] for v in taskdef["volumes"]}


def test_image_declares_tmp_volume_so_fargate_bind_mount_is_writable() -> None:
    """A Fargate bind mount is root:0755 unless the image declares VOLUME at that path (its
    permissions are then copied). The image runs as UID 10001, so without VOLUME ["/tmp"] the
    read-only-root task definition could not write its temp files or backups."""
    taskdef = render(ECS_DIR / "taskdef.json")
    container = taskdef["containerDefinitions"][0]
    if not container.get("readonlyRootFilesystem"):
        pytest.skip("task definition does not use a read-only root")  # pragma: no cover
    dockerfile = (REPO / "Dockerfile").read_text()
    volumes = re.findall(r"^\s*VOLUME\s+(.+)$", dockerfile, flags=re.MULTILINE)
    assert any("/tmp" in v for v in volumes), (
        'Dockerfile needs VOLUME ["/tmp"] for ecs/taskdef.json (readonlyRootFilesystem + '
        "bind mount at /tmp on Fargate)"
    )


def _policy_actions(policy: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for statement in policy["Statement"]:
        value = statement["Action"]
        actions |= {value} if isinstance(value, str) else set(value)
    return actions


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("task-role-policy.json", TASK_ROLE_ACTIONS),
        ("execution-role-policy.json", EXECUTION_ROLE_ACTIONS),
        ("deployer-policy.json", DEPLOYER_ACTIONS),
    ],
)
def test_iam_policy_names_exactly_the_documented_actions(name: str, expected: set[str]) -> None:
    policy = render(ECS_DIR / "iam" / name)
    assert policy["Version"] == "2012-10-17"
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert not any("*" in a for a in _policy_actions(policy)), "no wildcard actions"
    assert _policy_actions(policy) == expected


def test_task_role_scopes_secret_and_backup_prefix() -> None:
    policy = render(ECS_DIR / "iam" / "task-role-policy.json")
    by_action = {}
    for statement in policy["Statement"]:
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            by_action[action] = statement["Resource"]
    assert by_action["secretsmanager:GetSecretValue"].startswith("arn:aws:secretsmanager:")
    object_actions = TASK_ROLE_ACTIONS - {"secretsmanager:GetSecretValue", "s3:ListBucket"}
    for action in object_actions:
        assert by_action[action] == "arn:aws:s3:::app-backups/migrate/*"
    [listing] = [s for s in policy["Statement"] if s["Action"] == "s3:ListBucket"]
    assert listing["Resource"] == "arn:aws:s3:::app-backups"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "migrate/*"}}


@pytest.mark.parametrize(
    "name", ["task-role-policy.json", "execution-role-policy.json", "deployer-policy.json"]
)
def test_iam_policy_is_accepted_by_iam_policy_validation(aws_env: None, name: str) -> None:
    """moto's IAM runs the policy-grammar checks of CreatePolicy (MalformedPolicyDocument)."""
    import boto3
    from moto import mock_aws

    document = json.dumps(render(ECS_DIR / "iam" / name))
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_policy(PolicyName=name.removesuffix(".json"), PolicyDocument=document)
        broken = json.loads(document)
        broken["Statement"][0]["Effect"] = "Permit"
        with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
            iam.create_policy(PolicyName="broken", PolicyDocument=json.dumps(broken))


def test_every_placeholder_is_documented() -> None:
    docs = (REPO / "docs" / "ecs.md").read_text()
    names: set[str] = set()
    for path in [ECS_DIR / "taskdef.json", *sorted((ECS_DIR / "iam").glob("*.json"))]:
        names |= set(PLACEHOLDER.findall(path.read_text()))
    undocumented = sorted(n for n in names if f"${{{n}}}" not in docs)
    assert names and not undocumented, undocumented


def test_templates_are_plain_json_before_substitution() -> None:
    for path in [ECS_DIR / "taskdef.json", *(ECS_DIR / "iam").glob("*.json")]:
        json.loads(Path(path).read_text())
