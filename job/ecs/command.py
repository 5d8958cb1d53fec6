"""`migrate-job ecs-run`: run the migration as a one-off ECS task and exit with its exit code.

This module is the command's edge: flags, the environment (GitHub's run id for the client
token), signals and boto3. The decisions live in job/ecs/outcome.py, the request in
job/ecs/request.py and the waiting loop in job/ecs/wait.py. boto3 is imported inside main() so
that a plain `migrate-job run` never loads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from job.ecs.outcome import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_TASK_FAILED_TO_START,
    EXIT_USAGE,
    Outcome,
    failures_outcome,
)
from job.ecs.request import (
    ClientToken,
    RequestError,
    RunRequest,
    awslogs_stream,
    choose_container,
    console_url,
    derive_client_token,
    parse_duration,
    parse_env_pairs,
    split_list,
    started_by,
)
from job.ecs.wait import FatalAwsError, LogTailer, Waiter, error_code

# RunTask errors that mean the request itself is wrong (exit 2) rather than "could not start now".
REQUEST_ERROR_CODES = frozenset(
    {
        "InvalidParameterException",
        "ClusterNotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "PlatformUnknownException",
        "PlatformTaskDefinitionIncompatibilityException",
        "UnsupportedFeatureException",
        "ClientException",
    }
)
DEFAULT_TIMEOUT = "30m"
DEFAULT_POLL_INTERVAL = "5s"
DEFAULT_STOP_WAIT = "30s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `migrate-job ecs-run` (job/cli.py owns the parser and calls main())."""
    parser.add_argument("--cluster", required=True, help="ECS cluster name or ARN")
    parser.add_argument(
        "--task-definition",
        required=True,
        help="family, family:revision or ARN of the migration task definition",
    )
    parser.add_argument("--subnets", help="comma-separated subnet ids (awsvpc / Fargate)")
    parser.add_argument("--security-groups", help="comma-separated security group ids")
    parser.add_argument(
        "--assign-public-ip",
        choices=["ENABLED", "DISABLED"],
        default="DISABLED",
        help="public IP for the task's ENI (needed in public subnets without a NAT to pull the "
        "image); default DISABLED",
    )
    placement = parser.add_mutually_exclusive_group()
    placement.add_argument(
        "--launch-type",
        choices=["FARGATE", "EC2", "EXTERNAL", "MANAGED_INSTANCES"],
        help="default FARGATE unless --capacity-provider is given",
    )
    placement.add_argument(
        "--capacity-provider",
        help="capacity provider name(s), comma-separated (e.g. FARGATE_SPOT), equal weights",
    )
    parser.add_argument(
        "--container",
        help='the migration container; default: "migrate" if present, else the first one',
    )
    parser.add_argument(
        "--command",
        # Not "command": job/cli.py's subparsers store the subcommand name there.
        dest="container_command",
        help="override the container command (one string, split like a shell)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment override for the container (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        default=DEFAULT_TIMEOUT,
        help=f"our own deadline; then StopTask and exit 124 (default {DEFAULT_TIMEOUT})",
    )
    parser.add_argument(
        "--client-token",
        help="RunTask idempotency token (default: derived from GITHUB_RUN_ID, "
        "GITHUB_RUN_ATTEMPT and the request in GitHub Actions, else random)",
    )
    parser.add_argument("--region", help="AWS region (default: the SDK's, e.g. AWS_REGION)")
    parser.add_argument(
        "--poll-interval",
        default=DEFAULT_POLL_INTERVAL,
        help=f"how often to poll the task and its logs (default {DEFAULT_POLL_INTERVAL})",
    )
    parser.add_argument(
        "--stop-wait",
        default=DEFAULT_STOP_WAIT,
        help="after StopTask, how long to wait for STOPPED before exiting "
        f"(default {DEFAULT_STOP_WAIT})",
    )


class Interrupts:
    """SIGINT/SIGTERM recorder; its sleep() returns early when a signal arrives.

    The handler only records: StopTask is called from the loop, not from inside a signal
    handler that may have interrupted a half-finished HTTP call.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self._event = threading.Event()

    def handle(self, signum: int, _frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        self.count += 1
        self._event.set()

    def sleep(self, seconds: float) -> None:
        if self._event.wait(seconds):
            self._event.clear()

    def __call__(self) -> int | None:
        return self.signum

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self.handle)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@dataclasses.dataclass
class Runtime:
    """What main() takes from the process; tests substitute a fake clock and sleep."""

    environ: Mapping[str, str]
    stdout: TextIO
    stderr: TextIO
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    interrupts: Interrupts
    session_factory: Callable[[str | None], Any] | None = None  # region -> boto3 Session


def main(args: argparse.Namespace) -> int:
    interrupts = Interrupts()
    runtime = Runtime(
        environ=os.environ,
        stdout=sys.stdout,
        stderr=sys.stderr,
        clock=time.monotonic,
        sleep=interrupts.sleep,
        interrupts=interrupts,
    )
    with interrupts.installed():
        return execute(args, runtime)


def execute(args: argparse.Namespace, rt: Runtime) -> int:
    began = rt.clock()

    def say(message: str) -> None:
        print(f"ecs-run: {message}", file=rt.stderr, flush=True)

    def write_log_line(line: str) -> None:
        print(line, file=rt.stdout, flush=True)

    def finish(outcome: Outcome, task_arn: str | None) -> int:
        say(outcome.message)
        summary = {
            "event": "migrate.summary",
            "command": "ecs-run",
            "outcome": outcome.kind,
            "exit_code": outcome.exit_code,
            "task_arn": task_arn,
            "stop_code": outcome.stop_code,
            "stopped_reason": outcome.stopped_reason,
            "duration_s": round(rt.clock() - began, 3),
        }
        print(json.dumps(summary), file=rt.stderr, flush=True)
        _github_output(rt.environ, task_arn, outcome.exit_code)
        return outcome.exit_code

    try:
        timeout = parse_duration(args.timeout)
        poll_interval = parse_duration(args.poll_interval)
        stop_wait = parse_duration(args.stop_wait)
        environment = parse_env_pairs(args.env or [])
        command = (
            tuple(shlex.split(args.container_command))
            if args.container_command is not None
            else None
        )
    except (RequestError, ValueError) as exc:
        say(f"usage error: {exc}")
        return EXIT_USAGE

    try:
        session = (rt.session_factory or _boto3_session)(args.region)
    except ModuleNotFoundError:
        say(
            "ecs-run needs boto3, which is not installed: pip install boto3 "
            "(the migrate-job image includes it)"
        )
        return EXIT_USAGE
    region = session.region_name
    if not region:
        say("no AWS region: pass --region or set AWS_REGION")
        return EXIT_USAGE
    ecs = session.client("ecs")

    try:
        described = ecs.describe_task_definition(taskDefinition=args.task_definition)
        task_definition = described["taskDefinition"]
        container = choose_container(task_definition, args.container)
        others = [
            c.get("name")
            for c in task_definition.get("containerDefinitions") or []
            if c.get("name") != container
        ]
        if others:
            say(
                f"warning: the task definition has other containers ({', '.join(others)}); "
                f"only {container!r} decides the exit code, use a migration task definition "
                "without sidecars"
            )
        request = RunRequest(
            cluster=args.cluster,
            task_definition_arn=task_definition["taskDefinitionArn"],
            container=container,
            network_mode=task_definition.get("networkMode") or "bridge",
            subnets=tuple(split_list(args.subnets)),
            security_groups=tuple(split_list(args.security_groups)),
            assign_public_ip=args.assign_public_ip,
            launch_type=args.launch_type,
            capacity_providers=tuple(split_list(args.capacity_provider)),
            command=command,
            environment=environment,
        )
        token = derive_client_token(args.client_token, rt.environ, request.identity())
        run_kwargs = request.run_task_kwargs(token)
    except RequestError as exc:
        say(f"usage error: {exc}")
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - AWS refused: wrong name, credentials, permissions
        if _is_aws_error(exc):
            say(f"cannot read task definition {args.task_definition!r}: {exc}")
            return EXIT_USAGE
        raise

    if rt.interrupts() is not None:
        say("interrupted before the task was started; nothing to stop")
        return EXIT_SIGINT if rt.interrupts() == signal.SIGINT else EXIT_SIGTERM
    try:
        task, failures = _start_or_attach(ecs, args.cluster, run_kwargs, token, say)
    except Exception as exc:  # noqa: BLE001
        if _is_aws_error(exc):
            say(f"RunTask failed: {exc}")
            code = (
                EXIT_USAGE if error_code(exc) in REQUEST_ERROR_CODES else EXIT_TASK_FAILED_TO_START
            )
            return finish(Outcome(code, "failed_to_start", f"RunTask failed: {exc}"), None)
        raise
    if task is None:
        return finish(
            failures
            or Outcome(EXIT_TASK_FAILED_TO_START, "failed_to_start", "RunTask returned no task"),
            None,
        )

    task_arn = task["taskArn"]
    say(f"task {task_arn}")
    say(f"console {console_url(region, task.get('clusterArn') or args.cluster, task_arn)}")
    say(f"client token {token.value} ({token.origin})")

    task_id = task_arn.rsplit("/", 1)[-1]
    tailer = None
    stream = awslogs_stream(task_definition, container, task_id, region)
    if stream is None:
        say(f"container {container!r} has no awslogs driver with a stream prefix: not streaming")
    else:
        logs = session.client("logs", region_name=stream.region)
        say(f"logs {stream.group} {stream.stream}")
        tailer = LogTailer(logs, stream.group, stream.stream, write_log_line, say)

    waiter = Waiter(
        ecs=ecs,
        cluster=args.cluster,
        task_arn=task_arn,
        container=container,
        clock=rt.clock,
        sleep=rt.sleep,
        interrupted=rt.interrupts,
        interrupt_count=lambda: rt.interrupts.count,
        say=say,
        poll_interval=poll_interval,
        stop_wait=stop_wait,
        tailer=tailer,
    )
    try:
        outcome = waiter.wait(timeout)
    except FatalAwsError as exc:
        outcome = waiter.stop(
            f"migrate-job ecs-run cannot watch the task: {exc}", EXIT_USAGE, "aws_error"
        )
    return finish(outcome, task_arn)


def _start_or_attach(
    ecs: Any,
    cluster: str,
    run_kwargs: dict[str, Any],
    token: ClientToken,
    say: Callable[[str], None],
) -> tuple[dict[str, Any] | None, Outcome | None]:
    """RunTask, unless a task with this token was started by an earlier try of this step.

    ECS's clientToken already makes RunTask idempotent; the startedBy lookup is our own guard
    for when that is not enough (a try that died after the task started, an ECS endpoint or
    emulator that ignores the token), so a retried pipeline step never runs a second migration.
    """
    if token.reproducible:
        try:
            existing = _find_started(ecs, cluster, started_by(token))
        except Exception as exc:  # noqa: BLE001 - the clientToken still guards RunTask
            say(f"cannot look for an earlier task with this token (ecs:ListTasks): {exc}")
            existing = None
        if existing is not None:
            say(f"a task with client token {token.value} already exists: attaching to it")
            return existing, None
    response = ecs.run_task(**run_kwargs)
    tasks = response.get("tasks") or []
    failed = failures_outcome(response.get("failures") or [])
    if failed is not None and not tasks:
        return None, failed
    if not tasks:
        return None, None
    return dict(tasks[0]), None


def _find_started(ecs: Any, cluster: str, tag: str) -> dict[str, Any] | None:
    arns: list[str] = []
    for status in ("RUNNING", "STOPPED"):  # RUNNING also lists PENDING (desired RUNNING) tasks
        arns += ecs.list_tasks(cluster=cluster, startedBy=tag, desiredStatus=status).get(
            "taskArns", []
        )
    if not arns:
        return None
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns[:100]).get("tasks") or []
    # Newest first, should there ever be more than one.
    tasks.sort(key=lambda t: str(t.get("createdAt") or ""), reverse=True)
    return dict(tasks[0]) if tasks else None


def _boto3_session(region: str | None) -> Any:
    import boto3  # noqa: PLC0415 - lazy: heavy SDK, only for ecs-run

    return boto3.session.Session(region_name=region)


def _is_aws_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith("botocore") or error_code(exc) is not None


def _github_output(environ: Mapping[str, str], task_arn: str | None, exit_code: int) -> None:
    """Expose the task ARN and exit code as step outputs when running in GitHub Actions."""
    path = environ.get("GITHUB_OUTPUT")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"task-arn={task_arn or ''}\nexit-code={exit_code}\n")
    except OSError:
        pass


__all__ = ["EXIT_SIGINT", "EXIT_SIGTERM", "Interrupts", "Runtime", "add_arguments", "main"]
