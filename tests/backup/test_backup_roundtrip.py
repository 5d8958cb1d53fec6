"""Backup and restore round trips on every target, with real pg_dump/pg_restore."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import psycopg
import pytest

from job.backup import restore_backup, take_backup
from job.backup.targets import open_target

from .helpers import RecordingLog, backup_uri, fingerprint, make_settings, manifest_of, params_of


@pytest.mark.parametrize("kind", ["file", "s3", "azblob"])
def test_backup_then_restore_reproduces_every_table_sequence_enum_and_function(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, seeded_url: str,
    other_database: str, log: RecordingLog,
) -> None:
    uri, env = backup_uri(request, kind, tmp_path)
    settings = make_settings(uri, env)
    before = fingerprint(seeded_url)
    assert before["events"][0] == 100_000

    with psycopg.connect(seeded_url, autocommit=True) as conn:
        result = take_backup(settings, params_of(seeded_url), conn,
                             applied=["0001_init"], pending=["0002_next"], log=log)

    target = open_target(uri, env)
    assert result.uri.startswith(uri + "/") and result.uri.endswith(".dump")
    assert result.summary() == {"uri": result.uri, "bytes": result.bytes,
                                "sha256": result.sha256}
    stored = b"".join(target.read(result.uri.rsplit("/", 1)[1]))
    assert len(stored) == result.bytes
    assert hashlib.sha256(stored).hexdigest() == result.sha256
    assert stored[:5] == b"PGDMP"  # custom format

    manifest = manifest_of(target, result.uri)
    assert manifest["sha256"] == result.sha256 and manifest["bytes"] == result.bytes
    assert manifest["applied"] == ["0001_init"] and manifest["pending"] == ["0002_next"]
    assert manifest["format"] == "custom" and manifest["tool"] == "migrate-job"
    assert manifest["pg_dump_version"].startswith("18.")
    assert manifest["server_version"].startswith("18")
    assert manifest["verification"]["toc_entries"] > 10
    db = seeded_url.rsplit("/", 1)[1]
    assert manifest["database"].endswith("/" + db)
    assert "pg-admin-secret" not in repr(manifest)
    assert log.named("backup.verified")

    summary = restore_backup(settings, params_of(other_database), result.uri, log=log)
    assert summary["sha256"] == result.sha256
    assert fingerprint(other_database) == before
    # The sequence continues where it was, not from its start.
    with psycopg.connect(other_database) as conn:
        nxt = conn.execute("SELECT nextval('invoice_no')").fetchone()
    assert nxt is not None and nxt[0] == 1000 + 7 * 5000


def test_restore_over_a_changed_database_brings_it_back_and_names_extra_tables(
    seeded_url: str, tmp_path: Path, base_env: dict[str, str], log: RecordingLog,
) -> None:
    settings = make_settings(f"file://{tmp_path}/b", base_env)
    before = fingerprint(seeded_url)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        result = take_backup(settings, params_of(seeded_url), conn, applied=[], pending=["x"],
                             log=log)
        # What a half-applied migration might have done:
        conn.execute("DELETE FROM orders WHERE id % 2 = 0")
        conn.execute("ALTER TABLE customers ADD COLUMN vip boolean")
        conn.execute("CREATE TABLE new_thing (id int)")
    summary = restore_backup(settings, params_of(seeded_url), result.uri, log=log)
    assert fingerprint(seeded_url) == before
    assert summary["extra_tables"] == ["public.new_thing"]
    assert log.named("restore.extra_tables")


def test_restore_refuses_a_dump_that_does_not_match_its_manifest(
    seeded_url: str, other_database: str, tmp_path: Path, base_env: dict[str, str],
    log: RecordingLog,
) -> None:
    settings = make_settings(f"file://{tmp_path}/b", base_env)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        result = take_backup(settings, params_of(seeded_url), conn, applied=[], pending=["x"],
                             log=log)
    path = Path(result.uri[len("file://"):])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    from job.errors import BackupError

    with pytest.raises(BackupError, match="does not match its manifest"):
        restore_backup(settings, params_of(other_database), result.uri, log=log)
    with psycopg.connect(other_database) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                              ).fetchone()
    assert tables == (0,)  # nothing was restored


def test_restore_refuses_a_dump_without_manifest(
    tmp_path: Path, base_env: dict[str, str], other_database: str, log: RecordingLog,
) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "foreign.dump").write_bytes(b"PGDMP not ours")
    from job.errors import BackupError

    with pytest.raises(BackupError, match="refusing to restore"):
        restore_backup(make_settings(f"file://{tmp_path}/b", base_env),
                       params_of(other_database), f"file://{tmp_path}/b/foreign.dump", log=log)


def test_remote_restore_without_room_to_spool_streams_twice(
    seeded_url: str, other_database: str, request: pytest.FixtureRequest, tmp_path: Path,
    log: RecordingLog, monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri, env = backup_uri(request, "s3", tmp_path)
    settings = make_settings(uri, env)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        result = take_backup(settings, params_of(seeded_url), conn, applied=[], pending=["x"],
                             log=log)
    import shutil

    real = shutil.disk_usage

    def tiny(path: Any) -> Any:
        return real(path)._replace(free=1024)

    monkeypatch.setattr("job.backup.restore.shutil.disk_usage", tiny)
    restore_backup(settings, params_of(other_database), result.uri, log=log)
    assert log.named("restore.streaming_twice")
    assert fingerprint(other_database) == fingerprint(seeded_url)


def test_full_verification_restores_into_the_scratch_database(
    seeded_url: str, other_database: str, tmp_path: Path, base_env: dict[str, str],
    log: RecordingLog,
) -> None:
    settings = make_settings(f"file://{tmp_path}/b", base_env, backup_verify="full",
                             scratch_database_url=other_database)
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        result = take_backup(settings, params_of(seeded_url), conn, applied=[], pending=["x"],
                             log=log)
    assert fingerprint(other_database) == fingerprint(seeded_url)
    manifest = manifest_of(open_target(f"file://{tmp_path}/b", base_env), result.uri)
    assert manifest["verification"]["mode"] == "full"
    assert manifest["verification"]["restored_into"].endswith(other_database.rsplit("/", 1)[1])
