"""Where backups live: one small Protocol that the file, S3 and Azure Blob targets implement.

Rules for implementers (the shared contract test in tests/backup/test_targets.py checks them):
- Names are single path components (``db-20250101T000000Z-ab12cd.dump``) relative to the
  target's prefix; a target never lists or touches anything outside its prefix.
- ``open_writer`` returns a ``Writer`` that makes NOTHING visible under ``name`` until
  ``complete()``. ``abort()`` leaves no object and no half-finished upload behind (no open S3
  multipart upload, no committed Azure block, no partial file). Either may be called once.
- ``preflight(estimate)`` proves the target can take a dump of about ``estimate`` bytes
  without creating a visible object, and raises ``BackupError`` naming the reason otherwise.
- Every failure is a ``BackupError`` whose message names the target URI, never a credential.
- Cloud SDKs are imported inside the adapter, never by this module.

The adapters import this module; ``job.backup.targets.open_target`` picks one for a URI (kept
apart so this module imports none of its implementations: no import cycle).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from job.errors import BackupError, ConfigError

CHUNK = 1024 * 1024


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    def complete(self) -> None: ...

    def abort(self) -> str | None:
        """Discard everything written; returns a message if the cleanup itself failed."""
        ...


class Target(Protocol):
    uri: str  # the base URI (scheme://.../prefix) without a trailing slash

    def uri_for(self, name: str) -> str: ...

    def preflight(self, estimate: int) -> None: ...

    def open_writer(self, name: str, size_hint: int) -> Writer: ...

    def put(self, name: str, data: bytes) -> None: ...

    def read(self, name: str) -> Iterator[bytes]: ...

    def size(self, name: str) -> int: ...

    def list(self) -> list[str]: ...

    def delete(self, name: str) -> None: ...


def part_size(estimate: int, max_parts: int, minimum: int = 8 * 1024 * 1024) -> int:
    """A part/block size that fits twice the estimate into 90% of the service's part cap.

    The writers also double the size every ``max_parts // 10`` parts, so even a dump far larger
    than estimated stays under the cap (S3: 10,000 parts; Azure: 50,000 blocks).
    """
    wanted = (2 * max(estimate, 0)) // (max_parts * 9 // 10) + 1
    mib = 1024 * 1024
    return max(minimum, -(-wanted // mib) * mib)


def grown_part_size(base: int, part_number: int, max_parts: int, cap: int) -> int:
    """Part size for the 1-based ``part_number``: doubles every tenth of the cap."""
    return min(cap, base << ((part_number - 1) // max(1, max_parts // 10)))


def split_object_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix/name.dump`` -> (``s3://bucket/prefix``, ``name.dump``)."""
    base, sep, name = uri.rstrip("/").rpartition("/")
    if not sep or not name or base.endswith(":/"):
        raise ConfigError(f"backup URI {uri!r} does not name a dump object")
    return base, name


def fail(uri: str, what: str, exc: BaseException | None = None) -> BackupError:
    """A BackupError naming the target and the SDK's reason (already credential-free)."""
    reason = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    return BackupError(f"backup target {uri}: {what}{reason}", target=uri)
