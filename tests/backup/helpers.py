"""Shared helpers for the backup tests (targets by kind, object listings, pid handling)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from job.backup.target import Target, open_target


def backup_uri(request: pytest.FixtureRequest, kind: str, tmp_path: Path
               ) -> tuple[str, dict[str, str]]:
    prefix = "pre/" + uuid.uuid4().hex[:8]
    if kind == "file":
        return f"file://{tmp_path}/backups", request.getfixturevalue("base_env")
    if kind == "s3":
        bucket = request.getfixturevalue("bucket")
        return f"s3://{bucket}/{prefix}", request.getfixturevalue("s3_env")
    container = request.getfixturevalue("container")
    return f"azblob://devstoreaccount1/{container}/{prefix}", request.getfixturevalue("azure_env")


def everything_under(uri: str, env: dict[str, str]) -> list[str]:
    """Every object under the target, including hidden/partial files."""
    t = open_target(uri, env)
    kind = uri.split("://")[0]
    if kind == "file":
        d = Path(uri[len("file://"):])
        return sorted(p.name for p in d.iterdir()) if d.exists() else []
    if kind == "s3":
        resp = t.client.list_objects_v2(Bucket=t.bucket, Prefix=t.prefix)  # type: ignore[attr-defined]
        return sorted(o["Key"] for o in resp.get("Contents", []))
    return sorted(b.name for b in t.client.list_blobs(  # type: ignore[attr-defined]
        name_starts_with=t.prefix, include=["uncommittedblobs"])
        if b.size)  # staged-only blobs have size 0 and no content


def manifest_of(target: Target, dump_uri: str) -> dict[str, Any]:
    name = dump_uri.rsplit("/", 1)[1].replace(".dump", ".manifest.json")
    return json.loads(b"".join(target.read(name)))  # type: ignore[no-any-return]


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[1].split()[0] == "Z"
