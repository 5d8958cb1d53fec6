"""MIGRATE_SECRET_FILE: a mounted Kubernetes Secret or CSI secret-store file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from secrets_leak import assert_not_leaked
from secrets_support import HOSTILE_PASSWORD, settings_for
from structlog.testing import capture_logs

from job.errors import ConfigError
from job.secrets import get_params_factory, source_for

ENV_DB = {"MIGRATE_DATABASE_URL": "postgresql://envuser@db.internal:5432/app"}


def file_settings(path: Path | str) -> object:
    return settings_for(MIGRATE_SECRET_SOURCE="file", MIGRATE_SECRET_FILE=str(path), **ENV_DB)


def write(path: Path, text: str, mode: int = 0o400) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_json_file_with_hostile_password(tmp_path: Path) -> None:
    f = write(tmp_path / "db.json", json.dumps({"username": "u", "password": HOSTILE_PASSWORD}))
    with capture_logs() as logs:
        p = source_for(file_settings(f)).fetch().params  # type: ignore[arg-type]
    assert p["password"] == HOSTILE_PASSWORD and p["host"] == "db.internal"
    assert not [e for e in logs if e["event"] == "secrets.file_world_readable"]


def test_url_file_with_trailing_newline(tmp_path: Path) -> None:
    f = write(tmp_path / "url", "postgresql://u:p%40ss@h:5433/d\n")
    p = source_for(file_settings(f)).fetch().params  # type: ignore[arg-type]
    assert (p["password"], p["port"]) == ("p@ss", "5433")


def test_world_readable_file_is_used_with_a_warning(tmp_path: Path) -> None:
    f = write(tmp_path / "url", "postgresql://u:pw-abc1@h/d", mode=0o644)
    with capture_logs() as logs:
        assert source_for(file_settings(f)).fetch().password == "pw-abc1"  # type: ignore[arg-type]
    warnings = [e for e in logs if e["event"] == "secrets.file_world_readable"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning" and warnings[0]["mode"] == "0o644"
    assert warnings[0]["path"] == str(f)
    assert_not_leaked("pw-abc1", repr(logs))


def test_kubernetes_style_symlinked_secret(tmp_path: Path) -> None:
    # The kubelet projects ..data/<key> and a <key> symlink to it; rotation swaps ..data.
    data = tmp_path / "..2026_01_01"
    data.mkdir()
    write(data / "url", "postgresql://u:pw-one1@h/d")
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "url").symlink_to("..data/url")
    get_params = get_params_factory(file_settings(tmp_path / "url"))  # type: ignore[arg-type]
    assert get_params(False).password == "pw-one1"
    new = tmp_path / "..2026_01_02"
    new.mkdir()
    write(new / "url", "postgresql://u:pw-two2@h/d")
    (tmp_path / "..data_tmp").symlink_to(new.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert get_params(False).password == "pw-one1"
    assert get_params(True).password == "pw-two2"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"secret file '.*/absent' does not exist") as err:
        source_for(file_settings(tmp_path / "absent")).fetch()  # type: ignore[arg-type]
    assert err.value.exit_code == 2


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        source_for(file_settings(tmp_path)).fetch()  # type: ignore[arg-type]


def test_unreadable_file(tmp_path: Path) -> None:
    # Root reads any file; a FIFO-free way to fail open() for everyone is a dangling symlink.
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match="does not exist"):
        source_for(file_settings(tmp_path / "link")).fetch()  # type: ignore[arg-type]
    if os.geteuid() != 0:
        f = write(tmp_path / "locked", "postgresql://u:pw@h/d", mode=0o000)
        with pytest.raises(ConfigError, match="cannot be read"):
            source_for(file_settings(f)).fetch()  # type: ignore[arg-type]


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the secret is empty"),
    (b"\xff\xfe garbage", "not UTF-8"),
    (b"pw-plain-text-1", "neither a postgresql:// URL nor JSON"),
    (b'{"username": "u"}', "missing field 'password'"),
])
def test_malformed_file(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "secret"
    f.write_bytes(content)
    f.chmod(0o400)
    with pytest.raises(ConfigError, match=message) as err:
        source_for(file_settings(f)).fetch()  # type: ignore[arg-type]
    assert str(err.value).startswith(f"secret file '{f}'")
    assert_not_leaked("pw-plain-text-1", str(err.value))
