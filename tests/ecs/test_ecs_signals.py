"""A cancelled pipeline: the real `migrate-job ecs-run` process gets SIGTERM/SIGINT while it
waits, calls StopTask and exits 143/130. The process talks HTTP to a moto server running in
this test process, so the test sees ECS's side (the task's stop reason) directly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ecs_testkit import CLUSTER, REGION, REPO, MotoEcs, setup_moto_ecs


@pytest.fixture
def moto_server(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, MotoEcs]]:
    import urllib.request

    from moto.moto_api import state_manager
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)

    def reset() -> None:  # the server's backends are this process's: start from nothing
        urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset", b""))

    reset()
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
    try:
        yield endpoint, setup_moto_ecs()
    finally:
        state_manager.unset_transition("ecs::task")
        reset()
        server.stop()


def start_ecs_run(endpoint: str, env_moto: MotoEcs, *extra: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        "--cluster", CLUSTER, "--task-definition", "app-migrate",
        "--subnets", env_moto.subnet, "--security-groups", env_moto.security_group,
        "--region", REGION, "--poll-interval", "200ms", "--stop-wait", "10s", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "job", "ecs-run", *argv],  # the real CLI
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_running_task(env_moto: MotoEcs, proc: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tasks = env_moto.tasks()
        if tasks:
            return tasks[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("ecs-run did not start a task within 30 s")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cancelled_pipeline_stops_the_task(
    moto_server: tuple[str, MotoEcs], sig: signal.Signals, code: int
) -> None:
    endpoint, env_moto = moto_server
    proc = start_ecs_run(endpoint, env_moto, "--timeout", "10m")
    try:
        task = wait_for_running_task(env_moto, proc)
        time.sleep(0.5)  # let it poll a few times: the signal arrives mid-wait
        assert proc.poll() is None
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert task.desired_status == "STOPPED"
    assert sig.name in task.stopped_reason
    assert task.task_arn in stderr
    assert f'"exit_code": {code}' in stderr


def test_real_process_propagates_exit_code_and_streams_logs(
    moto_server: tuple[str, MotoEcs],
) -> None:
    endpoint, env_moto = moto_server
    proc = start_ecs_run(endpoint, env_moto, "--timeout", "1m")
    try:
        task = wait_for_running_task(env_moto, proc)
        env_moto.put_log(task, "migration.failed id=0002 sqlstate=23505")
        time.sleep(0.5)
        env_moto.finish(task, exit_code=8)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 8, stderr
    assert stdout.splitlines() == ["migration.failed id=0002 sqlstate=23505"]
