"""The pure parts of ecs-run: task description → exit code, durations, tokens, names."""

from __future__ import annotations

from typing import Any

import pytest

from job.ecs.outcome import decide, failures_outcome
from job.ecs.request import (
    RequestError,
    RunRequest,
    awslogs_stream,
    choose_container,
    console_url,
    derive_client_token,
    parse_duration,
)


def stopped(
    exit_code: int | None = None,
    stop_code: str | None = "EssentialContainerExited",
    reason: str = "Essential container in task exited",
    container_reason: str | None = None,
    name: str = "migrate",
    extra: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "lastStatus": "STOPPED"}
    if exit_code is not None:
        container["exitCode"] = exit_code
    if container_reason:
        container["reason"] = container_reason
    task: dict[str, Any] = {
        "lastStatus": "STOPPED",
        "stoppedReason": reason,
        "containers": [container, *(extra or [])],
    }
    if stop_code:
        task["stopCode"] = stop_code
    return task


@pytest.mark.parametrize("status", ["PROVISIONING", "PENDING", "RUNNING", "DEPROVISIONING"])
def test_not_stopped_means_keep_waiting(status: str) -> None:
    task = stopped(exit_code=0)
    task["lastStatus"] = status
    assert decide(task, "migrate") is None


@pytest.mark.parametrize(
    ("task", "code", "kind", "needle"),
    [
        (stopped(0), 0, "succeeded", "exited 0"),
        (stopped(8), 8, "migration_failed", "exited 8"),
        (stopped(137), 137, "migration_failed", "exited 137"),
        (stopped(143, "UserInitiated", "stopped by bob"), 143, "migration_failed", "bob"),
        (
            stopped(None, "TaskFailedToStart", "ResourceInitializationError: x"),
            11,
            "failed_to_start",
            "ResourceInitializationError",
        ),
        (
            stopped(0, "TaskFailedToStart", "CannotPullContainerError: y"),
            11,
            "failed_to_start",
            "CannotPullContainerError",
        ),
        (
            stopped(None, container_reason="CannotPullContainerError: pull access denied"),
            11,
            "failed_to_start",
            "pull access denied",
        ),
        (stopped(None, None, ""), 11, "failed_to_start", "no reason given"),
        (stopped(None, "UserInitiated", "stopped by alice"), 12, "stopped_externally", "alice"),
        (stopped(None, "SpotInterruption", "spot"), 12, "stopped_externally", "SpotInterruption"),
        (
            stopped(None, "UserInitiated", "ResourceInitializationError: z"),
            11,
            "failed_to_start",
            "ResourceInitializationError",
        ),
    ],
)
def test_stopped_task_outcomes(task: dict[str, Any], code: int, kind: str, needle: str) -> None:
    outcome = decide(task, "migrate")
    assert outcome is not None
    assert (outcome.exit_code, outcome.kind) == (code, kind)
    assert needle in outcome.message


def test_only_the_migration_containers_exit_code_counts() -> None:
    sidecar = {"name": "envoy", "lastStatus": "STOPPED", "exitCode": 0}
    outcome = decide(stopped(8, extra=[sidecar]), "migrate")
    assert outcome is not None and outcome.exit_code == 8
    sidecar_fails = {"name": "envoy", "lastStatus": "STOPPED", "exitCode": 1}
    outcome = decide(stopped(0, extra=[sidecar_fails]), "migrate")
    assert outcome is not None and outcome.exit_code == 0


def test_missing_migration_container_is_a_start_failure() -> None:
    outcome = decide(stopped(0, name="other"), "migrate")
    assert outcome is not None and outcome.exit_code == 11


def test_runtask_failures_are_a_start_failure_with_reason() -> None:
    assert failures_outcome([]) is None
    outcome = failures_outcome([{"arn": "arn:x", "reason": "RESOURCE:MEMORY", "detail": "d"}])
    assert outcome is not None and outcome.exit_code == 11
    assert "RESOURCE:MEMORY (d) [arn:x]" in outcome.message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("500ms", 0.5), ("5s", 5), ("1h", 3600), ("90", 90), ("1.5m", 90)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10 minutes", "-5s", "5d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(RequestError):
        parse_duration(text)


IDENTITY = ["prod", "arn:aws:ecs:us-east-1:1:task-definition/app-migrate:7", "migrate"]
GH = {"GITHUB_RUN_ID": "123456", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_REPOSITORY": "acme/app"}


def test_github_token_is_stable_per_attempt_and_request() -> None:
    first = derive_client_token(None, GH, IDENTITY)
    assert first == derive_client_token(None, dict(GH), list(IDENTITY))
    assert first.reproducible and first.value.startswith("gh-123456-1-")
    assert len(first.value) <= 64
    assert derive_client_token(None, {**GH, "GITHUB_RUN_ATTEMPT": "2"}, IDENTITY) != first
    other_revision = [IDENTITY[0], IDENTITY[1].replace(":7", ":8"), IDENTITY[2]]
    assert derive_client_token(None, GH, other_revision).value != first.value


def test_token_without_ci_is_random_and_explicit_is_validated() -> None:
    a, b = derive_client_token(None, {}, IDENTITY), derive_client_token(None, {}, IDENTITY)
    assert a.value != b.value and not a.reproducible
    assert derive_client_token("deploy-7_b", {}, IDENTITY).value == "deploy-7_b"
    for bad in ["", "x" * 65, "has space", "semi;colon"]:
        with pytest.raises(RequestError):
            derive_client_token(bad, {}, IDENTITY)


def test_container_choice_and_log_stream_name() -> None:
    logging = {
        "logDriver": "awslogs",
        "options": {"awslogs-group": "/ecs/g", "awslogs-stream-prefix": "pfx"},
    }
    taskdef = {
        "containerDefinitions": [
            {"name": "init"},
            {"name": "migrate", "logConfiguration": logging},
        ]
    }
    assert choose_container(taskdef, None) == "migrate"
    assert choose_container({"containerDefinitions": [{"name": "app"}]}, None) == "app"
    with pytest.raises(RequestError):
        choose_container(taskdef, "nope")
    stream = awslogs_stream(taskdef, "migrate", "abc123", "eu-west-1")
    assert stream is not None
    assert (stream.group, stream.stream, stream.region) == (
        "/ecs/g",
        "pfx/migrate/abc123",
        "eu-west-1",
    )
    assert awslogs_stream(taskdef, "init", "abc123", "eu-west-1") is None


def test_console_url() -> None:
    assert (
        console_url(
            "eu-west-1",
            "arn:aws:ecs:eu-west-1:1:cluster/prod",
            "arn:aws:ecs:eu-west-1:1:task/prod/f00",
        )
        == "https://eu-west-1.console.aws.amazon.com/ecs/v2/clusters/prod/tasks/f00"
    )


def test_capacity_provider_replaces_launch_type() -> None:
    request = RunRequest(
        "c", "arn:td", "migrate", "awsvpc", subnets=("s",), capacity_providers=("FARGATE_SPOT",)
    )
    kwargs = request.run_task_kwargs(derive_client_token("t", {}, []))
    assert "launchType" not in kwargs
    assert kwargs["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    assert kwargs["clientToken"] == "t" and kwargs["startedBy"] == "migrate-job/t"
