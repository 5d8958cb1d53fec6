"""Cases moto cannot express, against botocore's Stubber (which validates every request and
response against the real ECS model): RunTask `failures[]`, and that the client token reaches
RunTask. moto ignores clientToken, so idempotency of ECS itself is not testable offline; our own
guard (attach via startedBy) is tested here and, end to end, in test_ecs_run_moto.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ecs_testkit import ECS_DIR, REGION, FakeClock, render, run_ecs

TD_ARN = f"arn:aws:ecs:{REGION}:123456789012:task-definition/app-migrate:3"
TASK_ARN = f"arn:aws:ecs:{REGION}:123456789012:task/deploy/0123456789abcdef"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:123456789012:cluster/deploy"


class FakeSession:
    region_name = REGION

    def __init__(self, ecs: Any, logs: Any) -> None:
        self._clients = {"ecs": ecs, "logs": logs}

    def client(self, name: str, region_name: str | None = None) -> Any:
        return self._clients[name]


@pytest.fixture
def stubbed(aws_env: None) -> Iterator[tuple[Any, Any, FakeSession]]:
    import boto3
    from botocore.stub import Stubber

    ecs = boto3.client("ecs", region_name=REGION)
    logs = boto3.client("logs", region_name=REGION)
    with Stubber(ecs) as ecs_stub, Stubber(logs) as logs_stub:
        yield ecs_stub, logs_stub, FakeSession(ecs, logs)
        ecs_stub.assert_no_pending_responses()


def taskdef_response() -> dict[str, Any]:
    taskdef = render(ECS_DIR / "taskdef.json")
    taskdef["taskDefinitionArn"] = TD_ARN
    taskdef["revision"] = 3
    return {"taskDefinition": taskdef}


ARGV = ["--cluster", "deploy", "--task-definition", "app-migrate", "--subnets", "subnet-1"]


def test_runtask_failures_exit_11_with_the_reason(stubbed: Any) -> None:
    ecs_stub, _logs, session = stubbed
    ecs_stub.add_response(
        "describe_task_definition", taskdef_response(), {"taskDefinition": "app-migrate"}
    )
    ecs_stub.add_response(
        "run_task",
        {
            "tasks": [],
            "failures": [
                {
                    "arn": "arn:aws:ecs:::subnet-1",
                    "reason": "RESOURCE:ENI",
                    "detail": "no free addresses",
                }
            ],
        },
    )
    result = run_ecs(
        ARGV + ["--client-token", "tok-1"], FakeClock(), session_factory=lambda region: session
    )
    assert result.code == 11
    assert "RESOURCE:ENI (no free addresses)" in result.stderr
    assert result.summary()["outcome"] == "failed_to_start"


def test_runtask_request_carries_client_token_and_started_by(stubbed: Any) -> None:
    from botocore.stub import ANY

    ecs_stub, logs_stub, session = stubbed
    ecs_stub.add_response(
        "describe_task_definition", taskdef_response(), {"taskDefinition": "app-migrate"}
    )
    for status in ("RUNNING", "STOPPED"):  # the guard finds nothing
        ecs_stub.add_response(
            "list_tasks",
            {"taskArns": []},
            {"cluster": "deploy", "startedBy": "migrate-job/tok-2", "desiredStatus": status},
        )
    ecs_stub.add_response(
        "run_task",
        {
            "tasks": [
                {"taskArn": TASK_ARN, "clusterArn": CLUSTER_ARN, "lastStatus": "PROVISIONING"}
            ],
            "failures": [],
        },
        {
            "cluster": "deploy",
            "taskDefinition": TD_ARN,
            "count": 1,
            "clientToken": "tok-2",
            "startedBy": "migrate-job/tok-2",
            "launchType": "FARGATE",
            "networkConfiguration": {
                "awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "DISABLED"}
            },
        },
    )
    ecs_stub.add_response(
        "describe_tasks",
        {
            "tasks": [
                {
                    "taskArn": TASK_ARN,
                    "lastStatus": "STOPPED",
                    "stopCode": "EssentialContainerExited",
                    "containers": [{"name": "migrate", "exitCode": 0}],
                }
            ]
        },
        {"cluster": "deploy", "tasks": [TASK_ARN]},
    )
    for _ in range(3):
        logs_stub.add_client_error(
            "get_log_events", "ResourceNotFoundException", expected_params=ANY
        )
    result = run_ecs(
        ARGV + ["--client-token", "tok-2"], FakeClock(), session_factory=lambda region: session
    )
    assert result.code == 0, result.stderr


def test_existing_task_with_token_is_attached_and_runtask_not_called(stubbed: Any) -> None:
    ecs_stub, _logs, session = stubbed
    ecs_stub.add_response(
        "describe_task_definition", taskdef_response(), {"taskDefinition": "app-migrate"}
    )
    ecs_stub.add_response(
        "list_tasks",
        {"taskArns": [TASK_ARN]},
        {"cluster": "deploy", "startedBy": "migrate-job/tok-3", "desiredStatus": "RUNNING"},
    )
    ecs_stub.add_response(
        "list_tasks",
        {"taskArns": []},
        {"cluster": "deploy", "startedBy": "migrate-job/tok-3", "desiredStatus": "STOPPED"},
    )
    running = {
        "taskArn": TASK_ARN,
        "clusterArn": CLUSTER_ARN,
        "lastStatus": "RUNNING",
        "containers": [{"name": "migrate"}],
    }
    ecs_stub.add_response(
        "describe_tasks", {"tasks": [running]}, {"cluster": "deploy", "tasks": [TASK_ARN]}
    )
    # No run_task queued: Stubber raises if ecs-run calls it.
    done = {
        **running,
        "lastStatus": "STOPPED",
        "stopCode": "EssentialContainerExited",
        "containers": [{"name": "migrate", "exitCode": 8}],
    }
    ecs_stub.add_response(
        "describe_tasks", {"tasks": [done]}, {"cluster": "deploy", "tasks": [TASK_ARN]}
    )
    session._clients["logs"] = _NoLogs()
    result = run_ecs(
        ARGV + ["--client-token", "tok-3"], FakeClock(), session_factory=lambda region: session
    )
    assert result.code == 8, result.stderr
    assert "already exists: attaching" in result.stderr


class _NoLogs:
    def get_log_events(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "GetLogEvents")


def test_missing_boto3_is_exit_2_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from ecs_testkit import parse

    from job import ecs

    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 now raises ImportError
    code = ecs.main(parse(ARGV + ["--region", REGION]))
    assert code == 2
    assert "boto3" in capsys.readouterr().err
