"""One contract every backup target passes (file, S3 via moto server, Azure Blob via Azurite)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from job.backup.target import Target, part_size
from job.backup.targets import open_target
from job.errors import BackupError

KINDS = ["file", "s3", "azblob"]


@pytest.fixture(params=KINDS)
def target_setup(request: pytest.FixtureRequest, tmp_path: Path, base_env: dict[str, str]
                 ) -> tuple[str, dict[str, str], str]:
    """(base URI, environment, kind) of an empty target."""
    kind = request.param
    prefix = "backups/" + uuid.uuid4().hex[:8]
    if kind == "file":
        return f"file://{tmp_path}/{prefix}", base_env, kind
    if kind == "s3":
        env = request.getfixturevalue("s3_env")
        bucket = request.getfixturevalue("bucket")
        return f"s3://{bucket}/{prefix}", env, kind
    env = request.getfixturevalue("azure_env")
    container = request.getfixturevalue("container")
    return f"azblob://devstoreaccount1/{container}/{prefix}", env, kind


@pytest.fixture
def target(target_setup: tuple[str, dict[str, str], str]) -> Target:
    uri, env, _ = target_setup
    t = open_target(uri, env)
    t.preflight(1024)
    return t


def _read(t: Target, name: str) -> bytes:
    return b"".join(t.read(name))


def test_completed_writer_is_visible_with_exact_bytes(target: Target) -> None:
    data = bytes(range(256)) * 40_000  # ~10 MB: more than one 8 MiB part/block
    w = target.open_writer("a.dump", len(data))
    for i in range(0, len(data), 300_000):
        w.write(data[i:i + 300_000])
    assert "a.dump" not in target.list()  # nothing visible before complete()
    w.complete()
    assert target.list() == ["a.dump"]
    assert target.size("a.dump") == len(data)
    assert _read(target, "a.dump") == data
    assert target.uri_for("a.dump") == target.uri + "/a.dump"


def test_aborted_writer_leaves_nothing(target: Target) -> None:
    w = target.open_writer("b.dump", 1)
    w.write(b"x" * (9 * 1024 * 1024))  # at least one part/block already uploaded
    assert w.abort() is None
    assert target.list() == []
    with pytest.raises(BackupError):
        target.size("b.dump")


def test_put_read_list_delete(target: Target) -> None:
    target.put("m.manifest.json", b'{"a": 1}')
    target.put("z.dump", b"zz")
    assert target.list() == ["m.manifest.json", "z.dump"]
    assert _read(target, "m.manifest.json") == b'{"a": 1}'
    target.delete("z.dump")
    target.delete("z.dump")  # deleting twice is not an error
    assert target.list() == ["m.manifest.json"]


def test_reading_a_missing_object_is_a_backup_error(target: Target) -> None:
    with pytest.raises(BackupError) as err:
        _read(target, "missing.dump")
    assert target.uri in str(err.value)


def test_list_stays_inside_the_prefix(target_setup: tuple[str, dict[str, str], str]) -> None:
    uri, env, _ = target_setup
    outer, inner, sibling = (open_target(u, env)
                             for u in (uri.rsplit("/", 1)[0], uri, uri + "-sibling"))
    for t in (outer, inner, sibling):
        t.preflight(1)
    outer.put("outside.dump", b"1")
    inner.put("inside.dump", b"2")
    sibling.put("sibling.dump", b"3")
    assert inner.list() == ["inside.dump"]
    assert "inside.dump" not in outer.list()
    assert "outside.dump" in outer.list()


def test_preflight_refuses_a_target_that_cannot_be_written(
        target_setup: tuple[str, dict[str, str], str], tmp_path: Path) -> None:
    uri, env, kind = target_setup
    if kind == "file":
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where the directory should be")
        bad = f"file://{blocker}/sub"
    elif kind == "s3":
        bad = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x"
    else:
        bad = f"azblob://devstoreaccount1/no-such-container-{uuid.uuid4().hex[:8]}/x"
    with pytest.raises(BackupError) as err:
        open_target(bad, env).preflight(1)
    assert bad.split("://")[1].split("/")[0] in str(err.value)


def test_preflight_creates_no_visible_object(target: Target) -> None:
    target.preflight(1)
    assert target.list() == []


def test_part_size_keeps_a_huge_dump_under_the_part_cap() -> None:
    from job.backup.target import grown_part_size

    tib = 1024**4
    size = part_size(5 * tib, 10_000)
    assert size * 9_000 >= 2 * 5 * tib
    assert part_size(0, 10_000) == 8 * 1024 * 1024
    # Even a 10x under-estimate fits: sizes double every 1,000 parts.
    base = part_size(tib, 10_000)
    total = sum(grown_part_size(base, n, 10_000, 5 * 1024**3) for n in range(1, 10_001))
    assert total >= 10 * tib


def test_sdk_modules_are_not_imported_by_the_package(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys, job.backup, job.backup.target; "
            "print(any(m.startswith(('boto3', 'botocore', 'azure')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(Path(__file__).resolve().parents[2]))
    assert out.stdout.strip() == "False"


