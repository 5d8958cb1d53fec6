"""Pure decisions for `migrate-job ecs-run`: what an ECS task description means for the exit code.

Nothing here talks to AWS, so every outcome the waiting loop can reach is tested as a table
(tests/ecs/test_ecs_pure.py). The loop in job/ecs/wait.py only fetches descriptions and acts.

Exit codes (beyond the container's own, which is passed through unchanged):
  11  the task failed to start, or stopped before the migration container produced an exit code
      for an infrastructure reason (image pull, secrets, logs, ENI, capacity) — the migration
      did not run, or we cannot know that it finished.
  12  the task was stopped by someone or something else (StopTask by a person, a scheduler,
      Spot interruption) before the migration container produced an exit code.
  124 our own deadline (--timeout) was reached; we stopped the task.
  130 / 143 we were interrupted (SIGINT / SIGTERM, a cancelled pipeline); we stopped the task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_TASK_FAILED_TO_START = 11
EXIT_TASK_STOPPED_EXTERNALLY = 12
EXIT_DEADLINE = 124
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

# Substrings ECS puts in stoppedReason / a container's reason when the task never got as far as
# running our process. Seeing one of these with no exit code means "did not start", not "stopped".
START_FAILURE_MARKERS = (
    "CannotPullContainerError",
    "ResourceInitializationError",
    "CannotStartContainerError",
    "CannotCreateContainerError",
    "CannotInspectContainerError",
    "ContainerRuntimeError",
    "ContainerRuntimeTimeoutError",
    "InternalError",
    "TaskFailedToStart",
)

# stopCode values meaning an outside actor ended the task (not its essential container).
EXTERNAL_STOP_CODES = frozenset(
    {"UserInitiated", "ServiceSchedulerInitiated", "SpotInterruption", "TerminationNotice"}
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The final verdict on one task: the exit code ecs-run returns and a line for the operator."""

    exit_code: int
    kind: str  # succeeded | migration_failed | failed_to_start | stopped_externally
    message: str
    stop_code: str | None = None
    stopped_reason: str | None = None


def failures_outcome(failures: Iterable[Mapping[str, Any]]) -> Outcome | None:
    """RunTask's `failures[]`: ECS refused to place the task at all (capacity, bad subnet, ...)."""
    items = list(failures)
    if not items:
        return None
    parts = []
    for failure in items:
        reason = failure.get("reason") or "unknown reason"
        detail = failure.get("detail")
        arn = failure.get("arn")
        text = reason + (f" ({detail})" if detail else "") + (f" [{arn}]" if arn else "")
        parts.append(text)
    return Outcome(
        exit_code=EXIT_TASK_FAILED_TO_START,
        kind="failed_to_start",
        message="ECS did not start the task: " + "; ".join(parts),
    )


def find_container(task: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for container in task.get("containers") or []:
        if container.get("name") == name:
            return dict(container)
    return None


def decide(task: Mapping[str, Any], container_name: str) -> Outcome | None:
    """The outcome of a described task, or None while it has not reached STOPPED.

    Order matters: ECS says TaskFailedToStart even when a container has a stale exit code, so
    that is checked first; then a real exit code of the migration container is the truth about
    the migration (sidecars' codes are ignored on purpose: only ours is read); then a missing
    exit code is classified by who stopped the task.
    """
    if task.get("lastStatus") != "STOPPED":
        return None
    stop_code = task.get("stopCode") or None
    task_reason = (task.get("stoppedReason") or "").strip()
    container = find_container(task, container_name)
    container_reason = ((container or {}).get("reason") or "").strip()
    reasons = "; ".join(r for r in (task_reason, container_reason) if r) or "no reason given"
    exit_code = (container or {}).get("exitCode")

    def outcome(code: int, kind: str, message: str) -> Outcome:
        return Outcome(code, kind, message, stop_code=stop_code, stopped_reason=task_reason or None)

    if stop_code == "TaskFailedToStart":
        return outcome(
            EXIT_TASK_FAILED_TO_START, "failed_to_start", f"task failed to start: {reasons}"
        )
    if container is None:
        return outcome(
            EXIT_TASK_FAILED_TO_START,
            "failed_to_start",
            f"container {container_name!r} is not in the stopped task ({reasons})",
        )
    if isinstance(exit_code, int):
        suffix = ""
        if stop_code and stop_code != "EssentialContainerExited":
            suffix = f" (task stopped: {stop_code}: {reasons})"
        if exit_code == 0:
            return outcome(
                EXIT_OK, "succeeded", f"migration container {container_name!r} exited 0{suffix}"
            )
        return outcome(
            exit_code,
            "migration_failed",
            f"migration container {container_name!r} exited {exit_code}{suffix}",
        )
    # No exit code: our process never ran, or was killed before it could report.
    if any(marker in reasons for marker in START_FAILURE_MARKERS):
        return outcome(
            EXIT_TASK_FAILED_TO_START, "failed_to_start", f"task failed to start: {reasons}"
        )
    if stop_code in EXTERNAL_STOP_CODES:
        return outcome(
            EXIT_TASK_STOPPED_EXTERNALLY,
            "stopped_externally",
            f"task was stopped ({stop_code}) before {container_name!r} exited: {reasons}",
        )
    return outcome(
        EXIT_TASK_FAILED_TO_START,
        "failed_to_start",
        f"task stopped without an exit code from {container_name!r}"
        f" ({stop_code or 'no stopCode'}): {reasons}",
    )
