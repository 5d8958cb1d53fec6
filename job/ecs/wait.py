"""The waiting loop of `migrate-job ecs-run`: poll the task, stream its log, stop it when told.

Why our own loop: `aws ecs wait tasks-stopped` gives up after 10 minutes and leaves the task
running (NOTES.md §10). Here the deadline is ours, a cancelled pipeline stops the task, and the
verdict comes from job/ecs/outcome.decide(). Clients, clock, sleep and the interrupt check are
passed in, so tests drive the loop with a fake clock against moto or botocore's Stubber.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from typing import Any, Protocol

from job.ecs.outcome import (
    EXIT_DEADLINE,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_TASK_FAILED_TO_START,
    Outcome,
    decide,
    find_container,
)

# Error codes after which retrying a poll cannot help: stop (best effort) and report.
FATAL_ERROR_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ClusterNotFoundException",
        "InvalidParameterException",
        "ExpiredTokenException",
    }
)
# How long a just-started task may be reported MISSING (eventual consistency) before we give up.
MISSING_GRACE_S = 60.0
# After STOPPED, CloudWatch may still be ingesting the last lines: keep reading this long at most.
LOG_DRAIN_S = 10.0
MAX_PAGES_PER_POLL = 50


class EcsClient(Protocol):
    def describe_tasks(self, **kwargs: Any) -> Any: ...
    def stop_task(self, **kwargs: Any) -> Any: ...


class LogsClient(Protocol):
    def get_log_events(self, **kwargs: Any) -> Any: ...


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


class FatalAwsError(Exception):
    """An AWS error that waiting longer will not fix (permissions, wrong cluster)."""


class LogTailer:
    """Follows one CloudWatch Logs stream from its head, printing each event once."""

    def __init__(
        self,
        logs: LogsClient,
        group: str,
        stream: str,
        write: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> None:
        self._logs = logs
        self._group = group
        self._stream = stream
        self._write = write
        self._warn = warn
        self._token: str | None = None
        self._disabled = False
        self._warned: set[str] = set()

    def poll(self) -> int:
        """Print the events that arrived since the last poll; return how many."""
        if self._disabled:
            return 0
        printed = 0
        for _ in range(MAX_PAGES_PER_POLL):
            kwargs: dict[str, Any] = {
                "logGroupName": self._group,
                "logStreamName": self._stream,
                "startFromHead": True,
            }
            if self._token is not None:
                kwargs["nextToken"] = self._token
            try:
                response = self._logs.get_log_events(**kwargs)
            except Exception as exc:  # noqa: BLE001 - logs are best effort; the exit code is not
                code = error_code(exc)
                if code == "ResourceNotFoundException":
                    return printed  # the container has not written its first line yet
                if code in FATAL_ERROR_CODES:
                    self._disabled = True
                    self._warn(f"cannot read the task's log stream ({code}): {exc}; not streaming")
                    return printed
                key = code or type(exc).__name__
                if key not in self._warned:
                    self._warned.add(key)
                    self._warn(f"reading the task's log stream failed, will retry: {exc}")
                return printed
            events = response.get("events") or []
            for event in events:
                self._write(str(event.get("message", "")).rstrip("\n"))
            printed += len(events)
            token = response.get("nextForwardToken")
            unchanged = token == self._token
            self._token = token
            # CloudWatch returns the same token when there is nothing newer; an empty page may
            # still carry a newer token, so only stop on "no events".
            if not events or unchanged:
                return printed
        return printed


@dataclasses.dataclass
class Waiter:
    ecs: EcsClient
    cluster: str
    task_arn: str
    container: str
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    interrupted: Callable[[], int | None]
    say: Callable[[str], None]
    poll_interval: float = 5.0
    stop_wait: float = 30.0
    tailer: LogTailer | None = None
    interrupt_count: Callable[[], int] = lambda: 0

    def _describe(self) -> dict[str, Any] | None:
        response = self.ecs.describe_tasks(cluster=self.cluster, tasks=[self.task_arn])
        for task in response.get("tasks") or []:
            if task.get("taskArn") == self.task_arn or self.task_arn.endswith(
                "/" + str(task.get("taskArn", "")).rsplit("/", 1)[-1]
            ):
                return dict(task)
        return None

    def _poll_logs(self) -> None:
        if self.tailer is not None:
            self.tailer.poll()

    def _drain_logs(self) -> None:
        """Read until a poll brings nothing new (lines still being ingested), bounded in time."""
        if self.tailer is None:
            return
        until = self.clock() + LOG_DRAIN_S
        quiet = 0
        while quiet < 2 and self.clock() < until:
            if self.tailer.poll():
                quiet = 0
            else:
                quiet += 1
                if quiet < 2:
                    self.sleep(min(1.0, self.poll_interval))

    def _safe_describe(self) -> tuple[dict[str, Any] | None, bool]:
        """(task, ok): transient errors are reported and retried by the caller."""
        try:
            return self._describe(), True
        except Exception as exc:  # noqa: BLE001 - classify, then either retry or give up
            code = error_code(exc)
            if code in FATAL_ERROR_CODES:
                raise FatalAwsError(f"DescribeTasks failed: {exc}") from exc
            self.say(f"DescribeTasks failed, will retry: {exc}")
            return None, False

    def wait(self, timeout: float) -> Outcome:
        started = self.clock()
        deadline = started + timeout
        missing_since: float | None = None
        while True:
            signum = self.interrupted()
            if signum is not None:
                name = signal.Signals(signum).name
                code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
                return self.stop(
                    f"migrate-job ecs-run received {name} (pipeline cancelled)", code, "interrupted"
                )
            if self.clock() >= deadline:
                return self.stop(
                    f"migrate-job ecs-run deadline of {timeout:g}s reached",
                    EXIT_DEADLINE,
                    "deadline",
                )
            task, ok = self._safe_describe()
            self._poll_logs()
            if ok and task is None:
                missing_since = self.clock() if missing_since is None else missing_since
                if self.clock() - missing_since >= MISSING_GRACE_S:
                    return Outcome(
                        EXIT_TASK_FAILED_TO_START,
                        "failed_to_start",
                        f"task {self.task_arn} is not known to ECS (DescribeTasks: MISSING)",
                    )
            elif task is not None:
                missing_since = None
                outcome = decide(task, self.container)
                if outcome is not None:
                    self._drain_logs()
                    return outcome
            remaining = deadline - self.clock()
            self.sleep(max(0.0, min(self.poll_interval, remaining)))

    def stop(self, reason: str, exit_code: int, kind: str) -> Outcome:
        """StopTask with a reason, then wait up to stop_wait for STOPPED (a second signal cuts
        the wait short). The exit code stays ours (124/130/143): the migration did not finish
        on our watch, whatever the container reports while being stopped."""
        self.say(f"stopping task: {reason}")
        try:
            self.ecs.stop_task(cluster=self.cluster, task=self.task_arn, reason=reason[:255])
        except Exception as exc:  # noqa: BLE001 - report; we still exit with the right code
            self.say(f"StopTask failed: {exc}; the task may still be running: {self.task_arn}")
            return Outcome(exit_code, kind, f"{reason}; StopTask failed: {exc}")
        interrupts_at_stop = self.interrupt_count()
        until = self.clock() + self.stop_wait
        last: dict[str, Any] | None = None
        while self.clock() < until and self.interrupt_count() == interrupts_at_stop:
            task, _ok = self._safe_describe_quiet()
            self._poll_logs()
            if task is not None:
                last = task
                if task.get("lastStatus") == "STOPPED":
                    self._drain_logs()
                    container = find_container(task, self.container) or {}
                    code = container.get("exitCode")
                    detail = f"; container exit code {code}" if code is not None else ""
                    return Outcome(
                        exit_code,
                        kind,
                        f"{reason}; task stopped{detail}",
                        stop_code=task.get("stopCode"),
                        stopped_reason=task.get("stoppedReason"),
                    )
            self.sleep(max(0.0, min(self.poll_interval, until - self.clock())))
        status = (last or {}).get("lastStatus", "unknown")
        return Outcome(
            exit_code,
            kind,
            f"{reason}; StopTask sent, task not yet STOPPED (last status {status})",
        )

    def _safe_describe_quiet(self) -> tuple[dict[str, Any] | None, bool]:
        try:
            return self._describe(), True
        except Exception:  # noqa: BLE001 - best effort while stopping
            return None, False
