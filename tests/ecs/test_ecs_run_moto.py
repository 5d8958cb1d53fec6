"""ecs-run against moto's ECS and CloudWatch Logs, with a fake clock: the run/wait/exit-code
state machine end to end, the task definition being the real ecs/taskdef.json template."""

from __future__ import annotations

import pytest
from ecs_testkit import (
    CLUSTER,
    REGION,
    FakeClock,
    MotoEcs,
    base_argv,
    run_ecs,
)


def test_success_exits_0_prints_arn_link_and_streams_log(moto_ecs: MotoEcs) -> None:
    clock = FakeClock()

    def container_runs() -> None:
        task = moto_ecs.only_task()
        moto_ecs.put_log(task, "migrate.start", "migration.applied id=0001_init")

    def container_exits() -> None:
        task = moto_ecs.only_task()
        moto_ecs.put_log(task, "migrate.summary outcome=ok")
        moto_ecs.finish(task, exit_code=0)

    clock.at(1, container_runs)
    clock.at(2, container_exits)
    result = run_ecs(base_argv(moto_ecs, "--poll-interval", "2s"), clock)

    assert result.code == 0, result.stderr
    task = moto_ecs.only_task()
    assert task.task_arn in result.stderr
    assert (
        f"https://{REGION}.console.aws.amazon.com/ecs/v2/clusters/{CLUSTER}/tasks/{task.id}"
        in result.stderr
    )
    assert result.stdout.splitlines() == [
        "migrate.start",
        "migration.applied id=0001_init",
        "migrate.summary outcome=ok",
    ]
    summary = result.summary()
    assert summary["event"] == "migrate.summary"
    assert summary["exit_code"] == 0 and summary["outcome"] == "succeeded"
    assert summary["task_arn"] == task.task_arn
    # The request ECS received: Fargate, awsvpc with our subnet and group, no public IP.
    assert task.launch_type == "FARGATE"
    vpc = task.network_configuration["awsvpcConfiguration"]
    assert vpc["subnets"] == [moto_ecs.subnet]
    assert vpc["securityGroups"] == [moto_ecs.security_group]
    assert vpc["assignPublicIp"] == "DISABLED"


def test_migration_failure_exit_8_is_propagated(moto_ecs: MotoEcs) -> None:
    clock = FakeClock()
    clock.at(
        1,
        lambda: moto_ecs.finish(moto_ecs.only_task(), exit_code=8),
    )
    result = run_ecs(base_argv(moto_ecs), clock)
    assert result.code == 8, result.stderr
    assert "exited 8" in result.stderr
    assert result.summary()["outcome"] == "migration_failed"


def test_start_failure_without_exit_code_is_exit_11_with_reason(moto_ecs: MotoEcs) -> None:
    reason = (
        "ResourceInitializationError: unable to pull secrets or registry auth: "
        "execution resource retrieval failed"
    )
    clock = FakeClock()
    clock.at(
        1,
        lambda: moto_ecs.finish(
            moto_ecs.only_task(), exit_code=None, stop_code="TaskFailedToStart", reason=reason
        ),
    )
    result = run_ecs(base_argv(moto_ecs), clock)
    assert result.code == 11, result.stderr
    assert reason in result.stderr
    summary = result.summary()
    assert summary["outcome"] == "failed_to_start"
    assert summary["stop_code"] == "TaskFailedToStart"


def test_image_pull_failure_reported_on_the_container_is_exit_11(moto_ecs: MotoEcs) -> None:
    clock = FakeClock()
    clock.at(
        1,
        lambda: moto_ecs.finish(
            moto_ecs.only_task(),
            exit_code=None,
            stop_code="EssentialContainerExited",
            reason="Essential container in task exited",
            container_reason="CannotPullContainerError: pull image manifest has been retried",
        ),
    )
    result = run_ecs(base_argv(moto_ecs), clock)
    assert result.code == 11, result.stderr
    assert "CannotPullContainerError" in result.stderr


def test_task_stopped_by_someone_else_is_nonzero_with_their_reason(moto_ecs: MotoEcs) -> None:
    clock = FakeClock()

    def operator_stops_it() -> None:
        task = moto_ecs.only_task()
        moto_ecs.ecs.stop_task(cluster=CLUSTER, task=task.task_arn, reason="stopped by alice")
        task.stop_code = "UserInitiated"
        task.containers[0].exitCode = None

    clock.at(2, operator_stops_it)
    result = run_ecs(base_argv(moto_ecs), clock)
    assert result.code == 12, result.stderr
    assert "stopped by alice" in result.stderr
    assert result.summary()["outcome"] == "stopped_externally"


def test_deadline_past_10_minutes_stops_the_task_and_exits_124(moto_ecs: MotoEcs) -> None:
    clock = FakeClock()
    started = clock.now
    result = run_ecs(base_argv(moto_ecs, "--timeout", "30m", "--poll-interval", "10s"), clock)

    assert result.code == 124, result.stderr
    task = moto_ecs.only_task()
    # StopTask reached ECS, with our reason.
    assert task.desired_status == "STOPPED"
    assert "deadline" in task.stopped_reason
    # It waited the full 30 minutes of its own deadline, not a waiter's 10.
    assert clock.now - started >= 1800
    assert result.summary()["outcome"] == "deadline"


def test_log_lines_arriving_while_waiting_are_streamed_once_in_order(
    moto_ecs: MotoEcs,
) -> None:
    clock = FakeClock()
    seen_at: dict[int, str] = {}

    def emit(n: int, *lines: str) -> None:
        def action() -> None:
            moto_ecs.put_log(moto_ecs.only_task(), *lines)
            seen_at[n] = lines[0]

        clock.at(n, action)

    emit(1, "line 1", "line 2")
    emit(3, "line 3")
    emit(6, "line 4", "line 5")

    def exit_then_late_line() -> None:
        task = moto_ecs.only_task()
        moto_ecs.finish(task, exit_code=0)
        # CloudWatch still ingesting: this line lands after ECS already says STOPPED.
        moto_ecs.put_log(task, "line 6 (late)")

    clock.at(8, exit_then_late_line)
    result = run_ecs(base_argv(moto_ecs, "--poll-interval", "1s"), clock)

    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "line 1",
        "line 2",
        "line 3",
        "line 4",
        "line 5",
        "line 6 (late)",
    ]
    assert len(seen_at) == 3


def test_log_stream_that_never_appears_does_not_break_the_wait(moto_ecs: MotoEcs) -> None:
    clock = FakeClock()
    clock.at(3, lambda: moto_ecs.finish(moto_ecs.only_task(), exit_code=0))
    result = run_ecs(base_argv(moto_ecs), clock)
    assert result.code == 0, result.stderr
    assert result.stdout == ""


def test_retry_with_same_client_token_attaches_instead_of_starting_a_second_task(
    moto_ecs: MotoEcs,
) -> None:
    argv = base_argv(moto_ecs, "--client-token", "deploy-42-attempt-1")
    first = FakeClock()
    first.at(1, lambda: moto_ecs.finish(moto_ecs.only_task(), exit_code=0))
    assert run_ecs(argv, first).code == 0
    task = moto_ecs.only_task()

    retry = run_ecs(argv, FakeClock())
    assert retry.code == 0, retry.stderr
    assert "already exists: attaching" in retry.stderr
    assert moto_ecs.only_task() is task  # still exactly one task


def test_retry_after_a_try_died_mid_wait_watches_the_running_task(moto_ecs: MotoEcs) -> None:
    """The first try started the task and was killed (runner lost); the step is retried."""
    argv = base_argv(moto_ecs, "--client-token", "deploy-43-attempt-1")
    dying = FakeClock()

    def runner_lost() -> None:
        raise KeyboardInterrupt  # the process is gone; the task keeps running

    dying.at(1, runner_lost)
    with pytest.raises(KeyboardInterrupt):
        run_ecs(argv, dying)
    task = moto_ecs.only_task()
    assert task.status == "RUNNING"

    retry_clock = FakeClock()
    retry_clock.at(2, lambda: moto_ecs.finish(task, exit_code=8))
    retry = run_ecs(argv, retry_clock)
    assert retry.code == 8, retry.stderr
    assert moto_ecs.only_task() is task


def test_github_token_same_attempt_one_task_new_attempt_new_task(moto_ecs: MotoEcs) -> None:
    def gh(attempt: str) -> dict[str, str]:
        return {
            "GITHUB_RUN_ID": "9876543210",
            "GITHUB_RUN_ATTEMPT": attempt,
            "GITHUB_REPOSITORY": "acme/app",
            "GITHUB_JOB": "deploy",
        }

    def finish_newest() -> None:
        for task in moto_ecs.tasks():
            if task.status != "STOPPED":
                moto_ecs.finish(task, exit_code=0)

    for attempt in ("1", "1", "2"):
        clock = FakeClock()
        clock.at(1, finish_newest)
        result = run_ecs(base_argv(moto_ecs), clock, environ=gh(attempt))
        assert result.code == 0, result.stderr
    tokens = {t.started_by for t in moto_ecs.tasks()}
    assert len(moto_ecs.tasks()) == 2, tokens
    assert all(s.startswith("migrate-job/gh-9876543210-") for s in tokens)


def test_command_and_env_overrides_reach_the_migration_container(moto_ecs: MotoEcs) -> None:
    clock = FakeClock()
    clock.at(1, lambda: moto_ecs.finish(moto_ecs.only_task(), exit_code=0))
    argv = base_argv(
        moto_ecs, "--command", "plan --json", "--env", "MIGRATE_LOG_LEVEL=debug", "--env", "A=b=c"
    )
    assert run_ecs(argv, clock).code == 0
    overrides = moto_ecs.only_task().overrides["containerOverrides"]
    assert overrides == [
        {
            "name": "migrate",
            "command": ["plan", "--json"],
            "environment": [
                {"name": "MIGRATE_LOG_LEVEL", "value": "debug"},
                {"name": "A", "value": "b=c"},
            ],
        }
    ]


def test_unknown_task_definition_is_a_usage_error(moto_ecs: MotoEcs) -> None:
    argv = base_argv(moto_ecs)
    argv[argv.index("app-migrate")] = "no-such-family"
    result = run_ecs(argv, FakeClock())
    assert result.code == 2
    assert "no-such-family" in result.stderr
    assert moto_ecs.tasks() == []


def test_fargate_without_subnets_is_a_usage_error(moto_ecs: MotoEcs) -> None:
    result = run_ecs(
        ["--cluster", CLUSTER, "--task-definition", "app-migrate", "--region", REGION],
        FakeClock(),
    )
    assert result.code == 2
    assert "--subnets" in result.stderr
    assert moto_ecs.tasks() == []


def test_unknown_container_is_a_usage_error(moto_ecs: MotoEcs) -> None:
    result = run_ecs(base_argv(moto_ecs, "--container", "app"), FakeClock())
    assert result.code == 2
    assert "'app'" in result.stderr
