"""Helpers for the ECS tests: a moto AWS with a Fargate-ready VPC, a cluster, the log group and
the real ecs/taskdef.json template registered, plus a fake clock that scripts what happens
"in AWS" while ecs-run waits."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ECS_DIR = REPO / "ecs"
REGION = "us-east-1"
ACCOUNT = "123456789012"
CLUSTER = "deploy"
LOG_GROUP = "/ecs/app-migrate"

PLACEHOLDER_VALUES = {
    "FAMILY": "app-migrate",
    "ENVIRONMENT": "production",
    "IMAGE": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/app-migrate:1.2.3",
    "TASK_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/app-migrate-task",
    "EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/app-migrate-execution",
    "SECRET_ARN": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app/db-AbCdEf",
    "LOG_GROUP": LOG_GROUP,
    "AWS_REGION": REGION,
    "AWS_ACCOUNT_ID": ACCOUNT,
    "AWS_PARTITION": "aws",
    "BACKUP_BUCKET": "app-backups",
    "BACKUP_PREFIX": "migrate",
    "ECR_REPOSITORY_ARN": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/app-migrate",
}

PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def render(path: Path, values: dict[str, str] = PLACEHOLDER_VALUES) -> Any:
    """Substitute ${NAME} placeholders (as envsubst would) and parse the JSON."""
    text = path.read_text()
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    assert not missing, f"{path.name}: no test value for placeholders {missing}"
    rendered = PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
    assert "${" not in rendered
    return json.loads(rendered)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "GITHUB_RUN_ID", "GITHUB_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@dataclasses.dataclass
class MotoEcs:
    ecs: Any
    logs: Any
    subnet: str
    security_group: str
    task_definition_arn: str

    @property
    def backend(self) -> Any:
        from moto.ecs.models import ecs_backends

        return ecs_backends[ACCOUNT][REGION]

    def tasks(self) -> list[Any]:
        return list(self.backend.tasks.get(CLUSTER, {}).values())

    def only_task(self) -> Any:
        tasks = self.tasks()
        assert len(tasks) == 1, f"expected exactly one task, found {len(tasks)}"
        return tasks[0]

    def put_log(self, task: Any, *messages: str) -> None:
        stream = f"migrate/migrate/{task.id}"
        existing = self.logs.describe_log_streams(
            logGroupName=LOG_GROUP, logStreamNamePrefix=stream
        )["logStreams"]
        if not existing:
            self.logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        now = int(time.time() * 1000)
        self.logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)],
        )

    @staticmethod
    def finish(
        task: Any,
        exit_code: int | None,
        stop_code: str = "EssentialContainerExited",
        reason: str = "Essential container in task exited",
        container_reason: str | None = None,
    ) -> None:
        """What ECS records when the task ends (moto can only be told so in-process)."""
        container = task.containers[0]
        container.exitCode = exit_code
        container.last_status = "STOPPED"
        if container_reason is not None:
            container.reason = container_reason
        task.stop_code = stop_code
        task.stopped_reason = reason
        task.desired_status = "STOPPED"
        task.status = "STOPPED"


def setup_moto_ecs() -> MotoEcs:
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION)
    ecs = boto3.client("ecs", region_name=REGION)
    logs = boto3.client("logs", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="migrate", Description="migrate", VpcId=vpc)
    ecs.create_cluster(clusterName=CLUSTER)
    logs.create_log_group(logGroupName=LOG_GROUP)
    taskdef = render(ECS_DIR / "taskdef.json")
    # moto needs a container-level memory to place a Fargate task (TOOLING.md); real ECS does
    # not. The template itself is validated unmodified in test_ecs_templates.py.
    taskdef["containerDefinitions"][0]["memory"] = 2048
    arn = ecs.register_task_definition(**taskdef)["taskDefinition"]["taskDefinitionArn"]
    return MotoEcs(ecs, logs, subnet, group["GroupId"], arn)


@pytest.fixture
def moto_ecs(aws_env: None) -> Iterator[MotoEcs]:
    from moto import mock_aws
    from moto.moto_api import state_manager

    with mock_aws():
        # Tasks stay RUNNING until a test finishes them (instead of moto's "STOPPED on the
        # 4th describe"), so each test decides what ECS reports and when.
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
        try:
            yield setup_moto_ecs()
        finally:
            state_manager.unset_transition("ecs::task")


class FakeClock:
    """Monotonic clock advanced only by sleep(); scripted actions run at given poll counts."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0
        self.slept = 0.0
        self.script: dict[int, Callable[[], None]] = {}

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += max(seconds, 0.001)
        self.slept += seconds
        action = self.script.pop(self.sleeps, None)
        if action is not None:
            action()

    def at(self, sleep_number: int, action: Callable[[], None]) -> None:
        self.script[sleep_number] = action


@dataclasses.dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def summary(self) -> dict[str, Any]:
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith("{")]
        assert lines, f"no summary line in stderr:\n{self.stderr}"
        result: dict[str, Any] = json.loads(lines[-1])
        return result


def parse(argv: list[str]) -> argparse.Namespace:
    from job import ecs

    parser = argparse.ArgumentParser(prog="migrate-job ecs-run")
    ecs.add_arguments(parser)
    return parser.parse_args(argv)


def base_argv(env: MotoEcs, *extra: str) -> list[str]:
    return [
        "--cluster",
        CLUSTER,
        "--task-definition",
        "app-migrate",
        "--subnets",
        env.subnet,
        "--security-groups",
        env.security_group,
        "--region",
        REGION,
        *extra,
    ]


def run_ecs(
    argv: list[str],
    clock: FakeClock,
    environ: dict[str, str] | None = None,
    session_factory: Callable[[str | None], Any] | None = None,
    interrupts: Any = None,
) -> Result:
    """ecs-run in-process with the fake clock (what main() does, minus the real clock)."""
    from job import ecs

    out, err = io.StringIO(), io.StringIO()
    runtime = ecs.Runtime(
        environ=environ or {},
        stdout=out,
        stderr=err,
        clock=clock,
        sleep=clock.sleep,
        interrupts=interrupts or ecs.Interrupts(),
        session_factory=session_factory,
    )
    code = ecs.execute(parse(argv), runtime)
    return Result(code, out.getvalue(), err.getvalue())
