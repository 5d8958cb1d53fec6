"""Backups in a directory (a mounted volume, an NFS/EFS/Azure Files share).

A dump is written to a hidden temporary file in the same directory and renamed into place only
on ``complete()`` (after an fsync), so a reader never sees a half-written dump under its final
name, and ``abort()`` removes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from job.backup.target import CHUNK, fail
from job.errors import BackupError, ConfigError


class FileTarget:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.uri = "file://" + str(directory).rstrip("/") if str(directory) != "/" else "file:///"

    @classmethod
    def from_uri(cls, uri: str) -> FileTarget:
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"backup URI {uri!r}: a file URI needs an absolute path (file:///backups)"
            )
        path = unquote(parts.path) or "/"
        return cls(Path(path))

    def uri_for(self, name: str) -> str:
        return f"{self.uri.rstrip('/')}/{name}"

    def path(self, name: str) -> Path:
        if "/" in name or name in ("", ".", ".."):
            raise BackupError(f"invalid backup object name {name!r}")
        return self.directory / name

    def preflight(self, estimate: int) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Write for real: access() lies on read-only mounts and for root.
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".migrate-job-probe-"):
                pass
        except OSError as exc:
            raise fail(self.uri, "directory is not writable", exc) from None
        free = shutil.disk_usage(self.directory).free
        if free < estimate:
            raise fail(
                self.uri,
                f"not enough free space: {free} bytes free, the dump is estimated at up to "
                f"{estimate} bytes",
            )

    def open_writer(self, name: str, size_hint: int) -> _FileWriter:
        final = self.path(name)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.partial-")
        except OSError as exc:
            raise fail(self.uri, f"cannot create {name}", exc) from None
        return _FileWriter(os.fdopen(fd, "wb", buffering=0), Path(tmp), final, self.uri)

    def put(self, name: str, data: bytes) -> None:
        w = self.open_writer(name, len(data))
        try:
            w.write(data)
        except BaseException:
            w.abort()
            raise
        w.complete()

    def read(self, name: str) -> Iterator[bytes]:
        try:
            f = open(self.path(name), "rb")  # noqa: SIM115 - closed by the generator
        except OSError as exc:
            raise fail(self.uri, f"cannot read {name}", exc) from None
        with f:
            while chunk := f.read(CHUNK):
                yield chunk

    def size(self, name: str) -> int:
        try:
            return self.path(name).stat().st_size
        except OSError as exc:
            raise fail(self.uri, f"cannot stat {name}", exc) from None

    def list(self) -> list[str]:
        try:
            return sorted(
                e.name for e in os.scandir(self.directory)
                if e.is_file() and not e.name.startswith(".")
            )
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise fail(self.uri, "cannot list", exc) from None

    def delete(self, name: str) -> None:
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise fail(self.uri, f"cannot delete {name}", exc) from None


class _FileWriter:
    def __init__(self, f: IO[bytes], tmp: Path, final: Path, uri: str) -> None:
        self._f, self._tmp, self._final, self._uri = f, tmp, final, uri
        self._done = False

    def write(self, data: bytes) -> None:
        try:
            self._f.write(data)
        except OSError as exc:
            raise fail(self._uri, f"writing {self._final.name} failed", exc) from None

    def complete(self) -> None:
        try:
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self._tmp, self._final)
            dir_fd = os.open(self._final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.abort()
            raise fail(self._uri, f"finishing {self._final.name} failed", exc) from None
        self._done = True

    def abort(self) -> str | None:
        if self._done:
            return None
        self._done = True
        self._f.close()
        try:
            self._tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            return f"removing the partial file {self._tmp} failed: {exc}"
        return None
