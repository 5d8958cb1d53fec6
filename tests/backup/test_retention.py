"""MIGRATE_BACKUP_KEEP deletes only older dumps of the same database, never anything else."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from job.backup import take_backup
from job.backup.targets import open_target

from .helpers import RecordingLog, backup_uri, make_settings, params_of


@pytest.mark.parametrize("kind", ["file", "s3", "azblob"])
def test_keep_n_prunes_only_this_databases_older_dumps(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, database_url: str,
    other_database: str, log: RecordingLog,
) -> None:
    uri, env = backup_uri(request, kind, tmp_path)
    target = open_target(uri, env)
    target.preflight(0)
    for url in (database_url, other_database):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t AS SELECT generate_series(1, 100) AS n")
    # Foreign objects under the same prefix: a file of someone else, a manifest of another
    # tool, and a manifest that claims our tool but points outside the prefix.
    target.put("notes.txt", b"keep me")
    target.put("other-tool.manifest.json", json.dumps({"tool": "x", "dump": "notes.txt"}).encode())
    settings = make_settings(uri, env, backup_keep=2)

    with psycopg.connect(other_database, autocommit=True) as conn:
        other = take_backup(settings, params_of(other_database), conn, applied=[],
                            pending=["x"], log=log)
    ours = []
    for _ in range(4):
        with psycopg.connect(database_url, autocommit=True) as conn:
            ours.append(take_backup(settings, params_of(database_url), conn, applied=[],
                                    pending=["x"], log=log))

    names = set(target.list())
    def base(r: object) -> str:
        return r.uri.rsplit("/", 1)[1]  # type: ignore[attr-defined]
    kept = {base(r) for r in ours[-2:]}
    gone = {base(r) for r in ours[:2]}
    assert kept <= names
    assert not gone & names
    assert not {g.replace(".dump", ".manifest.json") for g in gone} & names
    assert base(other) in names  # another database's dump is untouched
    assert {"notes.txt", "other-tool.manifest.json"} <= names
    assert len(log.named("backup.retention_deleted")) == 2


def test_keep_zero_keeps_everything(database_url: str, tmp_path: Path, base_env: dict[str, str],
                                    log: RecordingLog) -> None:
    settings = make_settings(f"file://{tmp_path}/b", base_env, backup_keep=0)
    for _ in range(3):
        with psycopg.connect(database_url, autocommit=True) as conn:
            take_backup(settings, params_of(database_url), conn, applied=[], pending=["x"],
                        log=log)
    assert len([n for n in (tmp_path / "b").iterdir() if n.suffix == ".dump"]) == 3
