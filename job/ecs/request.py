"""Pure helpers for `migrate-job ecs-run`: durations, the client token, and the RunTask request.

Kept apart from the AWS calls so the parts a user relies on for idempotency (the token) and for
correctness (which container, which log stream) are tested without any AWS, real or mocked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_CONTAINER = "migrate"
STARTED_BY_PREFIX = "migrate-job/"
# ECS allows 33-126 in clientToken, but we also put the token in startedBy (letters, digits,
# '-', '_', '/'; 128 max) so that a retry can find the task: accept only what fits both.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class RequestError(ValueError):
    """A flag or task definition that ecs-run cannot work with (exit 2)."""


def parse_duration(text: str) -> float:
    """`500ms`, `5s`, `10m`, `1h` or plain seconds (CONTRACT.md), as seconds."""
    match = _DURATION.match(text)
    if not match:
        raise RequestError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 10m, 1h)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclasses.dataclass(frozen=True)
class ClientToken:
    value: str
    # True when the same pipeline attempt would derive the same value again, so a task started
    # by an earlier try of this step may exist and should be attached to rather than duplicated.
    reproducible: bool
    origin: str


def derive_client_token(
    explicit: str | None, environ: Mapping[str, str], request_identity: Sequence[str]
) -> ClientToken:
    """The RunTask clientToken.

    Explicit value: used as is. In GitHub Actions: one token per workflow run *attempt* and
    request, so a retried step (or a re-invoked command in the same attempt) gets the same task,
    while "Re-run jobs" (a new attempt) deliberately starts a new one. Elsewhere: random, which
    still makes botocore's own HTTP retries of RunTask idempotent.
    """
    if explicit is not None:
        if not TOKEN_PATTERN.match(explicit):
            raise RequestError(
                "--client-token must be 1-64 characters of letters, digits, '-' or '_'"
            )
        return ClientToken(explicit, True, "--client-token")
    run_id = environ.get("GITHUB_RUN_ID")
    if run_id:
        attempt = environ.get("GITHUB_RUN_ATTEMPT", "1")
        material = "\0".join(
            [
                environ.get("GITHUB_REPOSITORY", ""),
                environ.get("GITHUB_JOB", ""),
                environ.get("GITHUB_ACTION", ""),
                *request_identity,
            ]
        )
        digest = hashlib.sha256(material.encode()).hexdigest()[:24]
        token = re.sub(r"[^A-Za-z0-9_-]", "_", f"gh-{run_id}-{attempt}-{digest}")[:64]
        return ClientToken(token, True, "GITHUB_RUN_ID/GITHUB_RUN_ATTEMPT")
    return ClientToken(f"rnd-{uuid.uuid4().hex}", False, "random")


def started_by(token: ClientToken) -> str:
    return STARTED_BY_PREFIX + token.value


def choose_container(task_definition: Mapping[str, Any], requested: str | None) -> str:
    """The migration container: --container, else one named "migrate", else the first one."""
    names = [c.get("name", "") for c in task_definition.get("containerDefinitions") or []]
    if not names:
        raise RequestError("the task definition has no containers")
    if requested is not None:
        if requested not in names:
            raise RequestError(
                f"--container {requested!r} is not in the task definition (has: {', '.join(names)})"
            )
        return requested
    return DEFAULT_CONTAINER if DEFAULT_CONTAINER in names else names[0]


def container_definition(task_definition: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for container in task_definition.get("containerDefinitions") or []:
        if container.get("name") == name:
            return dict(container)
    raise RequestError(f"container {name!r} is not in the task definition")


@dataclasses.dataclass(frozen=True)
class LogStream:
    group: str
    stream: str
    region: str


def awslogs_stream(
    task_definition: Mapping[str, Any], container: str, task_id: str, default_region: str
) -> LogStream | None:
    """`<awslogs-stream-prefix>/<container>/<task-id>` in `awslogs-group`, or None when the
    container does not log with awslogs under a prefix (then the stream name is unknowable)."""
    config = container_definition(task_definition, container).get("logConfiguration") or {}
    if config.get("logDriver") != "awslogs":
        return None
    options = config.get("options") or {}
    group = options.get("awslogs-group")
    prefix = options.get("awslogs-stream-prefix")
    if not group or not prefix:
        return None
    return LogStream(
        group=group,
        stream=f"{prefix}/{container}/{task_id}",
        region=options.get("awslogs-region") or default_region,
    )


def parse_env_pairs(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    result = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise RequestError(f"--env expects KEY=VALUE, got {pair!r}")
        result.append((name, value))
    return tuple(result)


def split_list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


@dataclasses.dataclass(frozen=True)
class RunRequest:
    cluster: str
    task_definition_arn: str
    container: str
    network_mode: str
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: str = "DISABLED"
    launch_type: str | None = None
    capacity_providers: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()

    def identity(self) -> list[str]:
        """What makes two invocations "the same request" for the derived client token."""
        return [
            self.cluster,
            self.task_definition_arn,
            self.container,
            repr(self.command),
            repr(self.environment),
            repr(self.subnets),
            repr(self.security_groups),
            self.launch_type or "",
            repr(self.capacity_providers),
        ]

    def run_task_kwargs(self, token: ClientToken) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": self.task_definition_arn,
            "count": 1,
            "clientToken": token.value,
            "startedBy": started_by(token),
        }
        if self.capacity_providers:
            kwargs["capacityProviderStrategy"] = [
                {"capacityProvider": name, "weight": 1} for name in self.capacity_providers
            ]
        else:
            kwargs["launchType"] = self.launch_type or "FARGATE"
        if self.network_mode == "awsvpc":
            if not self.subnets:
                raise RequestError(
                    "the task definition uses awsvpc networking: --subnets is required"
                )
            vpc: dict[str, Any] = {
                "subnets": list(self.subnets),
                "assignPublicIp": self.assign_public_ip,
            }
            if self.security_groups:
                vpc["securityGroups"] = list(self.security_groups)
            kwargs["networkConfiguration"] = {"awsvpcConfiguration": vpc}
        override: dict[str, Any] = {}
        if self.command is not None:
            override["command"] = list(self.command)
        if self.environment:
            override["environment"] = [{"name": k, "value": v} for k, v in self.environment]
        if override:
            kwargs["overrides"] = {"containerOverrides": [{"name": self.container, **override}]}
        return kwargs


def console_url(region: str, cluster_arn_or_name: str, task_arn: str) -> str:
    cluster = cluster_arn_or_name.rsplit("/", 1)[-1]
    task_id = task_arn.rsplit("/", 1)[-1]
    return f"https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/tasks/{task_id}"
