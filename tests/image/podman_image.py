"""Building and running the image with podman, the way a deploy hook runs it.

Kept apart from the tests so that the tests read as behaviour. podman is configured by
scripts/podman-setup.sh (runc, host ulimits, overlay storage in its own directory, a debootstrap
base image), because this machine has no Docker engine and no reachable registry.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "podman-setup.sh"
IMAGE = "localhost/migrate-job:test"
RUN_AS = "10001"
METRICS_FILE = Path(os.environ.get("MIGRATE_IMAGE_METRICS",
                                   "/tmp/migrate-job-image-metrics.json"))
# Filled by the tests that measure, printed by conftest.py at the end of the run.
MEASURED: dict[str, Any] = {}


def record(**metrics: Any) -> None:
    """Keep a measurement for the end-of-run summary and in METRICS_FILE (JSON)."""
    MEASURED.update(metrics, file=str(METRICS_FILE))
    METRICS_FILE.write_text(json.dumps(MEASURED, indent=2) + "\n")


def skip_requested() -> bool:
    return os.environ.get("MIGRATE_SKIP_IMAGE_TESTS") == "1"


def setup_env() -> dict[str, str]:
    """Run the setup script and return the environment podman must run with.

    Raises RuntimeError with the script's output when podman cannot be made to work.
    """
    proc = subprocess.run(
        ["bash", str(SETUP), "--print-env"], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{SETUP.name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    env = dict(os.environ)
    for line in proc.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            env[key] = value
    if "CONTAINERS_CONF" not in env:
        raise RuntimeError(f"{SETUP.name} printed no CONTAINERS_CONF:\n{proc.stdout}")
    return env


def pip_cert() -> str | None:
    """The CA bundle pip trusts on this machine (a TLS-intercepting proxy needs it in the build)."""
    for candidate in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@dataclass
class Podman:
    env: dict[str, str]
    image: str = IMAGE
    built: list[str] = field(default_factory=list)

    def __call__(self, *args: str, timeout: float = 120, check: bool = False,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout,
            input=input,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {shlex.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
            )
        return proc

    def build(self, context: Path, tag: str, build_args: dict[str, str],
              dockerfile: Path | None = None, timeout: float = 1200) -> None:
        args = ["build", "--format", "docker", "--network=host", "-t", tag]
        cert = pip_cert()
        if cert:
            args += ["--secret", f"id=pip_cert,src={cert}"]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
            if self.env.get(key):
                args += ["--build-arg", f"{key}={self.env[key]}"]
        if dockerfile is not None:
            args += ["-f", str(dockerfile)]
        self(*args, str(context), timeout=timeout, check=True)
        self.built.append(tag)

    def run_args(self, database_url: str | None, mounts: Sequence[str] = (),
                 image: str | None = None, name: str | None = None) -> list[str]:
        """`podman run` as a hook runs it: non-root numeric UID, read-only root, tmpfs /tmp."""
        args = ["run", "--rm", "--network=host", "--read-only", "--tmpfs", "/tmp",
                "--user", RUN_AS, "-e", "MIGRATE_LOG_FORMAT=json"]
        if name:
            args += ["--name", name]
        if database_url:
            args += ["-e", f"MIGRATE_DATABASE_URL={database_url}"]
        for mount in mounts:
            args += ["-v", mount]
        args.append(image or self.image)
        return args

    def run(self, database_url: str | None, *cmd: str, mounts: Sequence[str] = (),
            image: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return self(*self.run_args(database_url, mounts, image), *cmd, timeout=timeout)

    def image_size(self, image: str | None = None) -> int:
        out = self("image", "inspect", "--format", "{{.Size}}", image or self.image, check=True)
        return int(out.stdout.strip())

    def inspect(self, image: str | None = None) -> dict[str, Any]:
        out = self("image", "inspect", image or self.image, check=True)
        data = json.loads(out.stdout)
        assert isinstance(data, list) and data
        return data[0]

    def cold_start(self, runs: int = 5) -> tuple[float, list[float]]:
        """Median wall time of `podman run ... migrate-job --version` (container start included)."""
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            proc = self.run(None, "--version", timeout=60)
            times.append(time.perf_counter() - start)
            assert proc.returncode == 0, proc.stderr
        return statistics.median(times), times


def summary_event(stderr: str) -> dict[str, Any]:
    """The last `migrate.summary` JSON log event of a run."""
    for line in reversed(stderr.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "migrate.summary":
            return event
    raise AssertionError(f"no migrate.summary event in stderr:\n{stderr[-3000:]}")
