"""The real image, built with podman and run as a deploy hook runs it.

Every run uses `--network=host --read-only --tmpfs /tmp --user 10001` against the test
PostgreSQL. Without a working podman these tests FAIL (the image is the product); set
MIGRATE_SKIP_IMAGE_TESTS=1 to skip them explicitly.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.image.podman_image import (
    IMAGE,
    REPO,
    Podman,
    record,
    setup_env,
    skip_requested,
    summary_event,
)

pytestmark = pytest.mark.image

BASE_IMAGE = os.environ.get("MIGRATE_PODMAN_BASE_IMAGE", "localhost/debian-minbase:bookworm")
# A bound, not a target: catches a compiler toolchain or a second copy of a dependency tree.
MAX_IMAGE_BYTES = 600 * 1024 * 1024
MAX_COLD_START_S = 5.0


@pytest.fixture(scope="session")
def podman() -> Podman:
    if skip_requested():
        pytest.skip("MIGRATE_SKIP_IMAGE_TESTS=1: container image tests skipped on request")
    try:
        env = setup_env()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(
            "podman cannot run on this machine, so the image was not tested. "
            "Fix scripts/podman-setup.sh's complaint, or set MIGRATE_SKIP_IMAGE_TESTS=1 "
            f"to skip the image tests on purpose.\n{exc}"
        )
    return Podman(env)


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    """The product image from the repository's Dockerfile, offline flavour (Debian client)."""
    context = Path(os.environ.get("MIGRATE_IMAGE_CONTEXT", str(REPO)))
    podman.build(context, IMAGE, {"BASE_IMAGE": BASE_IMAGE, "PG_CLIENT": "debian",
                               "VERSION": "0.0.0-test", "REVISION": "test"})
    return IMAGE


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    """A migrations dir the container's UID 10001 can read."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    directory.chmod(0o755)
    for name, sql in files.items():
        path = directory / name
        path.write_text(sql)
        path.chmod(0o644)
    return directory


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def scalar(url: str, sql: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


ADVISORY_LOCKS = """
    SELECT count(*) FROM pg_locks
    WHERE locktype = 'advisory'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@pytest.fixture
def app_image(podman: Podman, image: str, tmp_path: Path) -> Iterator[str]:
    """An application's image built FROM ours with its migrations copied in (the documented way)."""
    context = tmp_path / "app"
    write_migrations(context / "migrations", {
        "0001_widgets.sql": "CREATE TABLE widgets (id bigint PRIMARY KEY, name text NOT NULL);\n",
        "0002_widget_rows.sql": "INSERT INTO widgets VALUES (1, 'first');\n",
    })
    (context / "Dockerfile").write_text(
        f"FROM {image}\nCOPY migrations/ /app/migrations/\n"
    )
    tag = f"localhost/migrate-job-app:{uuid.uuid4().hex[:8]}"
    podman.build(context, tag, {}, timeout=300)
    yield tag
    podman("rmi", "-f", tag)


def test_image_runs_as_numeric_non_root_with_tini_and_no_build_tools(
        podman: Podman, image: str) -> None:
    config = podman.inspect(image)["Config"]
    assert isinstance(config, dict)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["tini", "--", "migrate-job"]
    assert config["Cmd"] == ["run"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MIGRATE_MIGRATIONS_DIR"] == "/app/migrations"
    assert env["HOME"] == "/tmp" and env["TMPDIR"] == "/tmp" and env["USER"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "migrate-job"
    assert labels["org.opencontainers.image.version"] == "0.0.0-test"

    probe = podman(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--user", "10001",
        "--entrypoint", "sh", image, "-c",
        "id -u; for t in gcc cc make pip pip3; do command -v $t; done; "
        "pg_dump --version; pg_restore --version; psql --version; "
        "ls /root/.cache /tmp/.cache 2>/dev/null; touch /app/x 2>/dev/null && echo WRITABLE; true",
        check=True,
    )
    lines = probe.stdout.split("\n")
    assert lines[0] == "10001"
    assert not [x for x in lines if x.startswith("/")], f"build tools in the image: {lines}"
    assert "pg_dump (PostgreSQL) 15" in probe.stdout
    assert "pg_restore (PostgreSQL) 15" in probe.stdout
    assert "psql (PostgreSQL) 15" in probe.stdout
    assert "WRITABLE" not in probe.stdout


def test_image_size_and_cold_start(podman: Podman, image: str) -> None:
    size = podman.image_size(image)
    median, samples = podman.cold_start(runs=5)
    version = podman.run(None, "--version").stdout.strip()
    metrics = {
        "image": image,
        "base_image": BASE_IMAGE,
        "pg_client": "debian",
        "size_bytes": size,
        "size_mb": round(size / 1e6, 1),
        "cold_start_median_s": round(median, 3),
        "cold_start_samples_s": [round(s, 3) for s in samples],
        "version_output": version,
    }
    record(**metrics)
    print(f"\nimage metrics: {json.dumps(metrics)}")
    assert "migrate-job" in version or version[:1].isdigit(), version
    assert size < MAX_IMAGE_BYTES, f"image is {size / 1e6:.0f} MB"
    assert median < MAX_COLD_START_S, f"cold start median {median:.2f}s: {samples}"


def test_app_image_applies_then_rerun_has_nothing_pending(
        podman: Podman, app_image: str, database_url: str) -> None:
    first = podman.run(database_url, "run", image=app_image)
    assert first.returncode == 0, first.stderr[-4000:]
    assert scalar(database_url, "SELECT to_regclass('public.widgets') IS NOT NULL") is True
    assert scalar(database_url, "SELECT count(*) FROM widgets") == 1
    applied = summary_event(first.stderr)["applied"]
    assert isinstance(applied, list) and len(applied) == 2, applied

    started = time.perf_counter()
    second = podman.run(database_url, "run", image=app_image)
    record(noop_run_s=round(time.perf_counter() - started, 3))
    assert second.returncode == 0, second.stderr[-4000:]
    assert summary_event(second.stderr)["applied"] == []
    assert scalar(database_url, "SELECT count(*) FROM widgets") == 1

    status = podman.run(database_url, "status", image=app_image)
    assert status.returncode == 0, status.stderr[-4000:]  # 10 would mean pending


def test_failing_mounted_migration_exits_8(
        podman: Podman, image: str, database_url: str, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "migrations", {
        "0001_ok.sql": "CREATE TABLE ok_table (id int);\n",
        "0002_bad.sql": "INSERT INTO no_such_table VALUES (1);\n",
    })
    proc = podman.run(database_url, "run", mounts=[f"{migrations}:/app/migrations:ro"],
                      image=image)
    assert proc.returncode == 8, proc.stderr[-4000:]
    assert "0002_bad" in proc.stderr
    assert "42P01" in proc.stderr  # undefined_table, the SQLSTATE the operator needs
    assert scalar(database_url, ADVISORY_LOCKS) == 0


def test_sigterm_during_migration_exits_143_and_releases_lock(
        podman: Podman, image: str, database_url: str, tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "migrations", {
        "0001_slow.sql": "CREATE TABLE slow_table (id int);\nSELECT pg_sleep(60);\n",
    })
    name = f"migrate-job-sigterm-{uuid.uuid4().hex[:8]}"
    args = podman.run_args(database_url, [f"{migrations}:/app/migrations:ro"], image, name)
    proc = subprocess.Popen(["podman", *args, "run"], env=podman.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: scalar(database_url, """
            SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND query LIKE '%pg_sleep(60)%'
              AND state = 'active' AND pid <> pg_backend_pid()""") == 1,
                 timeout=60, what="the migration's pg_sleep to start")
        assert scalar(database_url, ADVISORY_LOCKS) >= 1  # type: ignore[operator]

        started = time.monotonic()
        stop = podman("stop", "--time", "30", name, timeout=60)
        assert stop.returncode == 0, stop.stderr
        _, stderr = proc.communicate(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            podman("kill", name)
            proc.kill()
            proc.wait()

    assert proc.returncode == 143, stderr[-4000:]
    # podman stop escalates to SIGKILL after 30 s (exit 137): a quick 143 means tini forwarded
    # SIGTERM and the job cancelled its statement and exited by itself.
    assert elapsed < 25, f"took {elapsed:.1f}s to stop"
    wait_for(lambda: scalar(database_url, ADVISORY_LOCKS) == 0, timeout=10,
             what="the advisory lock to be released")
    assert scalar(database_url, """
        SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND query LIKE '%pg_sleep(60)%'
          AND pid <> pg_backend_pid()""") == 0
    # The interrupted migration rolled back: neither its table nor a record of it exists.
    assert scalar(database_url, "SELECT to_regclass('public.slow_table')") is None


def test_no_database_configured_exits_2(podman: Podman, image: str) -> None:
    proc = podman.run(None, "run", image=image)
    assert proc.returncode == 2, proc.stderr[-4000:]
