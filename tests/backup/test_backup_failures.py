"""Every way a backup can fail ends in BackupError (exit 7) and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from job.backup import take_backup
from job.errors import BackupError
from job.pgserver import debian_bin_dir

from .helpers import (
    RecordingLog,
    backup_uri,
    everything_under,
    make_settings,
    params_of,
    process_gone,
)

KINDS = ["file", "s3", "azblob"]


def _dump_calls(bin_dir: Path) -> list[str]:
    calls = bin_dir / "pg_dump.calls"
    lines = calls.read_text().splitlines() if calls.exists() else []
    return [c for c in lines if "--version" not in c]


def _no_multipart_uploads(request: pytest.FixtureRequest, uri: str) -> None:
    if uri.startswith("s3://"):
        client = request.getfixturevalue("s3_client")
        bucket = uri[len("s3://"):].split("/")[0]
        assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("kind", KINDS)
def test_pg_dump_killed_mid_stream_leaves_no_object_and_no_open_upload(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, seeded_url: str,
    wrapped_bin: Path, log: RecordingLog,
) -> None:
    uri, env = backup_uri(request, kind, tmp_path)
    env = {**env, "MIGRATE_PG_BIN_DIR": str(wrapped_bin)}
    killed: list[int] = []

    def kill_pg_dump(nbytes: int) -> None:
        if not killed:
            pid = int((wrapped_bin / "pg_dump.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with psycopg.connect(seeded_url, autocommit=True) as conn, \
            pytest.raises(BackupError) as err:
        take_backup(make_settings(uri, env), params_of(seeded_url), conn, applied=[],
                    pending=["x"], log=log, progress_hook=kill_pg_dump)
    assert killed
    assert "signal 9" in err.value.message
    assert err.value.exit_code == 7
    assert everything_under(uri, env) == []
    _no_multipart_uploads(request, uri)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_sigterm_during_dump_kills_pg_dump_aborts_upload_and_reraises(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, seeded_url: str,
    wrapped_bin: Path, log: RecordingLog,
) -> None:
    uri, env = backup_uri(request, kind, tmp_path)
    env = {**env, "MIGRATE_PG_BIN_DIR": str(wrapped_bin)}

    class Terminated(KeyboardInterrupt):
        pass

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated()

    def send_sigterm(nbytes: int) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with psycopg.connect(seeded_url, autocommit=True) as conn, pytest.raises(Terminated):
            take_backup(make_settings(uri, env), params_of(seeded_url), conn, applied=[],
                        pending=["x"], log=log, progress_hook=send_sigterm)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert process_gone(int((wrapped_bin / "pg_dump.pid").read_text()))
    assert everything_under(uri, env) == []
    _no_multipart_uploads(request, uri)


def test_pg_dump_older_than_the_server_is_refused_naming_both_versions(
    database_url: str, tmp_path: Path, base_env: dict[str, str], log: RecordingLog,
) -> None:
    old = debian_bin_dir(15)
    if old is None or not (old / "pg_dump").exists():
        pytest.skip("Debian's PostgreSQL 15 (postgresql-15) is not installed on this machine")
    env = {**base_env, "MIGRATE_PG_BIN_DIR": str(old)}
    with psycopg.connect(database_url, autocommit=True) as conn, \
            pytest.raises(BackupError) as err:
        take_backup(make_settings(f"file://{tmp_path}/b", env), params_of(database_url), conn,
                    applied=[], pending=["x"], log=log)
    assert "pg_dump 15." in err.value.message
    assert "PostgreSQL 18." in err.value.message
    assert not (tmp_path / "b").exists()  # refused before touching the target


def test_missing_pg_dump_is_refused(database_url: str, tmp_path: Path, log: RecordingLog
                                    ) -> None:
    env = {"PATH": str(tmp_path), "MIGRATE_PG_BIN_DIR": str(tmp_path)}
    with psycopg.connect(database_url, autocommit=True) as conn, \
            pytest.raises(BackupError, match="pg_dump not found"):
        take_backup(make_settings(f"file://{tmp_path}/b", env), params_of(database_url), conn,
                    applied=[], pending=["x"], log=log)
    env = {"PATH": str(tmp_path)}
    with psycopg.connect(database_url, autocommit=True) as conn, \
            pytest.raises(BackupError, match="pg_dump not found on PATH"):
        take_backup(make_settings(f"file://{tmp_path}/b", env), params_of(database_url), conn,
                    applied=[], pending=["x"], log=log)


def _refused_before_dump(settings_uri: str, env: dict[str, str], url: str, wrapped: Path,
                         log: RecordingLog, match: str) -> None:
    env = {**env, "MIGRATE_PG_BIN_DIR": str(wrapped)}
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(BackupError, match=match):
        take_backup(make_settings(settings_uri, env), params_of(url), conn, applied=[],
                    pending=["x"], log=log)
    assert _dump_calls(wrapped) == []
    assert not log.named("backup.started")


def test_unwritable_directory_is_refused_before_dumping(
    database_url: str, tmp_path: Path, base_env: dict[str, str], wrapped_bin: Path,
    log: RecordingLog,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    _refused_before_dump(f"file://{blocker}/backups", base_env, database_url, wrapped_bin, log,
                         "not writable")


def test_directory_without_room_for_the_estimate_is_refused_before_dumping(
    seeded_url: str, tmp_path: Path, base_env: dict[str, str], wrapped_bin: Path,
    log: RecordingLog, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr("job.backup.file_target.shutil.disk_usage",
                        lambda p: real(p)._replace(free=4096))
    _refused_before_dump(f"file://{tmp_path}/b", base_env, seeded_url, wrapped_bin, log,
                         "not enough free space")


def test_missing_bucket_is_refused_before_dumping(
    database_url: str, s3_env: dict[str, str], wrapped_bin: Path, log: RecordingLog,
) -> None:
    _refused_before_dump(f"s3://missing-{uuid.uuid4().hex[:8]}/p", s3_env, database_url,
                         wrapped_bin, log, "cannot write")


def test_missing_container_is_refused_before_dumping(
    database_url: str, azure_env: dict[str, str], wrapped_bin: Path, log: RecordingLog,
) -> None:
    _refused_before_dump(f"azblob://devstoreaccount1/missing-{uuid.uuid4().hex[:8]}/p",
                         azure_env, database_url, wrapped_bin, log, "not accessible")


def test_full_verification_without_scratch_database_is_refused_before_dumping(
    database_url: str, tmp_path: Path, base_env: dict[str, str], wrapped_bin: Path,
    log: RecordingLog,
) -> None:
    env = {**base_env, "MIGRATE_PG_BIN_DIR": str(wrapped_bin)}
    with psycopg.connect(database_url, autocommit=True) as conn, \
            pytest.raises(BackupError, match="MIGRATE_SCRATCH_DATABASE_URL"):
        take_backup(make_settings(f"file://{tmp_path}/b", env, backup_verify="full"),
                    params_of(database_url), conn, applied=[], pending=["x"], log=log)
    assert _dump_calls(wrapped_bin) == []


def test_password_never_reaches_pg_dump_argv_and_progress_is_logged(
    seeded_url: str, tmp_path: Path, base_env: dict[str, str], wrapped_bin: Path,
    log: RecordingLog,
) -> None:
    env = {**base_env, "MIGRATE_PG_BIN_DIR": str(wrapped_bin)}
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        # A heartbeat shorter than any read: every chunk logs its progress.
        result = take_backup(make_settings(f"file://{tmp_path}/b", env, heartbeat=1e-9),
                             params_of(seeded_url), conn, applied=[], pending=["x"], log=log)
    calls = _dump_calls(wrapped_bin)
    assert len(calls) == 1 and "--format=custom" in calls[0]
    assert "pg-admin-secret" not in calls[0] and "postgresql://" not in calls[0]
    progress = log.named("backup.progress")
    assert progress and progress[-1]["bytes"] <= result.bytes
    assert all("mb_per_s" in p for p in progress)


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_stream_that_is_not_a_readable_archive_is_discarded_even_if_pg_dump_exits_0(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, database_url: str,
    pg_bin: Path, log: RecordingLog,
) -> None:
    uri, env = backup_uri(request, kind, tmp_path)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    # Prints a real version, then a truncated archive header, and claims success.
    (fake / "pg_dump").write_text(
        "#!/bin/sh\n"
        f'case "$1" in --version) exec "{pg_bin}/pg_dump" --version;; esac\n'
        "printf 'PGDMP\\001\\020\\000\\004\\010\\001'\nexit 0\n")
    (fake / "pg_dump").chmod(0o755)
    (fake / "pg_restore").symlink_to(pg_bin / "pg_restore")
    env = {**env, "MIGRATE_PG_BIN_DIR": str(fake)}
    with psycopg.connect(database_url, autocommit=True) as conn, \
            pytest.raises(BackupError, match="pg_restore --list could not read the archive"):
        take_backup(make_settings(uri, env), params_of(database_url), conn, applied=[],
                    pending=["x"], log=log)
    assert everything_under(uri, env) == []
    _no_multipart_uploads(request, uri)
