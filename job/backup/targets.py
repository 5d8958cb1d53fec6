"""Which target a backup URI means: the one place that knows every ``Target`` implementation.

Kept out of ``job.backup.target`` (the Protocol the adapters import) so the package has no
import cycle; each adapter, and its cloud SDK, is imported only when its scheme is used.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from job.backup.target import Target
from job.errors import ConfigError


def open_target(uri: str, environ: dict[str, str] | None = None) -> Target:
    """The target for a base URI (``MIGRATE_BACKUP``). Raises ConfigError on a malformed URI."""
    env = dict(environ or {})
    scheme = urlsplit(uri).scheme
    if scheme == "file":
        from job.backup.file_target import FileTarget

        return FileTarget.from_uri(uri)
    if scheme == "s3":
        from job.backup.s3_target import S3Target

        return S3Target.from_uri(uri, env)
    if scheme == "azblob":
        from job.backup.azblob_target import AzureBlobTarget

        return AzureBlobTarget.from_uri(uri, env)
    raise ConfigError(
        f"backup URI {uri!r} must be file:///path, s3://bucket/prefix or "
        "azblob://account/container/prefix"
    )
