"""Backups in Azure Blob Storage as block blobs, via azure-storage-blob (imported lazily).

The dump's blocks are staged from background threads while pg_dump keeps writing and are
committed (``commit_block_list``) only on ``complete()``; until then no blob exists. Azure has no
call to discard staged blocks of a blob that was never committed: the service drops them after
seven days, and they are never visible or billed as a blob.

``azblob://account/container/prefix``: with ``AZURE_STORAGE_CONNECTION_STRING`` set, that
connection string is used (its AccountName must match the URI; Azurite and sovereign clouds
work this way); otherwise ``https://{account}.blob.core.windows.net`` with
``DefaultAzureCredential`` (workload identity, managed identity, ``AZURE_CLIENT_*`` variables).
The identity needs "Storage Blob Data Contributor" on the container.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from job.backup.chunked import ChunkedWriter
from job.backup.target import fail, part_size
from job.errors import ConfigError

MAX_BLOCKS = 50_000
MAX_BLOCK = 4000 * 1024 * 1024


def _conn_string_account(conn: str) -> str | None:
    for item in conn.split(";"):
        key, _, value = item.partition("=")
        if key.strip().lower() == "accountname":
            return value.strip()
    return None


def container_client(account: str, container: str, environ: Mapping[str, str]) -> Any:
    from azure.storage.blob import BlobServiceClient

    conn = environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if conn:
        named = _conn_string_account(conn)
        if named is not None and named != account:
            raise ConfigError(
                f"backup URI names storage account {account!r} but "
                f"AZURE_STORAGE_CONNECTION_STRING is for account {named!r}"
            )
        service = BlobServiceClient.from_connection_string(conn)
    else:
        from azure.identity import DefaultAzureCredential

        service = BlobServiceClient(f"https://{account}.blob.core.windows.net",
                                    credential=DefaultAzureCredential())
    return service.get_container_client(container)


class AzureBlobTarget:
    def __init__(self, account: str, container: str, prefix: str, client: Any) -> None:
        self.account, self.container = account, container
        self.prefix = prefix.strip("/")
        self.client = client
        self.uri = f"azblob://{account}/{container}" + (f"/{self.prefix}" if self.prefix else "")

    @classmethod
    def from_uri(cls, uri: str, environ: Mapping[str, str]) -> AzureBlobTarget:
        parts = urlsplit(uri)
        container, _, prefix = parts.path.lstrip("/").partition("/")
        if not parts.netloc or not container:
            raise ConfigError(
                f"backup URI {uri!r}: use azblob://account/container/prefix"
            )
        return cls(parts.netloc, container, prefix,
                   container_client(parts.netloc, container, environ))

    def blob_name(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def uri_for(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def preflight(self, estimate: int) -> None:
        try:
            self.client.get_container_properties()
        except Exception as exc:
            raise fail(self.uri, f"container {self.container!r} is not accessible", exc) from None
        # Staging one block proves write permission without creating a visible blob.
        probe = self.client.get_blob_client(
            self.blob_name(f".migrate-job-probe-{uuid.uuid4().hex}"))
        try:
            probe.stage_block(_block_id(0), b"probe")
        except Exception as exc:
            raise fail(self.uri, "cannot write blobs", exc) from None

    def open_writer(self, name: str, size_hint: int) -> _BlockWriter:
        blob = self.client.get_blob_client(self.blob_name(name))
        return _BlockWriter(self, blob, name, part_size(size_hint, MAX_BLOCKS))

    def put(self, name: str, data: bytes) -> None:
        from azure.storage.blob import ContentSettings

        try:
            self.client.get_blob_client(self.blob_name(name)).upload_blob(
                data, overwrite=True,
                content_settings=ContentSettings(content_type="application/json"),
            )
        except Exception as exc:
            raise fail(self.uri, f"cannot write {name}", exc) from None

    def read(self, name: str) -> Iterator[bytes]:
        try:
            stream = self.client.get_blob_client(self.blob_name(name)).download_blob(
                max_concurrency=2)
        except Exception as exc:
            raise fail(self.uri, f"cannot read {name}", exc) from None
        try:
            yield from stream.chunks()
        except Exception as exc:
            raise fail(self.uri, f"reading {name} failed", exc) from None

    def size(self, name: str) -> int:
        try:
            return int(self.client.get_blob_client(self.blob_name(name))
                       .get_blob_properties().size)
        except Exception as exc:
            raise fail(self.uri, f"cannot stat {name}", exc) from None

    def list(self) -> list[str]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        names = []
        try:
            for blob in self.client.list_blobs(name_starts_with=prefix or None):
                name = blob.name[len(prefix):]
                if name and "/" not in name and not name.startswith("."):
                    names.append(name)
        except Exception as exc:
            raise fail(self.uri, "cannot list", exc) from None
        return sorted(names)

    def delete(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.client.delete_blob(self.blob_name(name))
        except ResourceNotFoundError:
            pass
        except Exception as exc:
            raise fail(self.uri, f"cannot delete {name}", exc) from None


def _block_id(number: int) -> str:
    # All block ids of a blob must have the same length.
    return base64.b64encode(f"migrate-job-{number:08d}".encode()).decode()


class _BlockWriter(ChunkedWriter):
    max_parts = MAX_BLOCKS
    max_part = MAX_BLOCK

    def __init__(self, target: AzureBlobTarget, blob: Any, name: str, base: int) -> None:
        super().__init__(target.uri, name, base)
        self.blob = blob

    def upload_part(self, number: int, chunk: bytes) -> str:
        block_id = _block_id(number)
        self.blob.stage_block(block_id, chunk, length=len(chunk))
        return block_id

    def finish(self, parts: list[Any]) -> None:
        from azure.storage.blob import BlobBlock

        self.blob.commit_block_list([BlobBlock(block_id=b) for b in parts])

    def discard(self) -> None:
        # Nothing to do: uncommitted blocks never become a blob and expire after seven days.
        return None
