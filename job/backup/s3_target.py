"""Backups in S3 (or anything speaking its API: MinIO, moto) via boto3, imported lazily.

The dump is a multipart upload fed from the pipe. Parts are uploaded by two background threads
while pg_dump keeps writing; nothing is visible until ``complete()``, and ``abort()`` aborts the
multipart upload so no parts linger (and cost money). The part size comes from the size
estimate and doubles every 1,000 parts, so the 10,000-part cap is never reached.

Configuration comes from the job's environment: ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``,
``AWS_REGION``/``AWS_DEFAULT_REGION``, and static keys if given; otherwise boto3's default
credential chain (IRSA web identity, ECS task role, instance profile, profiles).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from job.backup.chunked import ChunkedWriter
from job.backup.target import CHUNK, fail, part_size
from job.errors import ConfigError

MAX_PARTS = 10_000
MAX_PART = 5 * 1024**3
IN_FLIGHT = 3  # parts buffered or uploading at once: bounds memory to IN_FLIGHT x part size


def client_from_env(environ: Mapping[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {}
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        kwargs["aws_access_key_id"] = environ["AWS_ACCESS_KEY_ID"]
        kwargs["aws_secret_access_key"] = environ["AWS_SECRET_ACCESS_KEY"]
        if environ.get("AWS_SESSION_TOKEN"):
            kwargs["aws_session_token"] = environ["AWS_SESSION_TOKEN"]
    config = Config(retries={"max_attempts": 5, "mode": "standard"},
                    max_pool_connections=IN_FLIGHT + 2)
    return boto3.session.Session(region_name=region).client("s3", config=config, **kwargs)


class S3Target:
    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.uri = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")

    @classmethod
    def from_uri(cls, uri: str, environ: Mapping[str, str]) -> S3Target:
        parts = urlsplit(uri)
        if not parts.netloc:
            raise ConfigError(f"backup URI {uri!r}: s3:// needs a bucket (s3://bucket/prefix)")
        return cls(parts.netloc, parts.path, client_from_env(environ))

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def uri_for(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def preflight(self, estimate: int) -> None:
        # Starting and aborting a multipart upload needs exactly the permission a dump needs
        # (s3:PutObject, s3:AbortMultipartUpload) and leaves no object behind.
        key = self.key(f".migrate-job-probe-{uuid.uuid4().hex}")
        try:
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise fail(self.uri, "cannot write (s3:PutObject)", exc) from None
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                               UploadId=upload["UploadId"])
        except Exception as exc:
            raise fail(self.uri, "cannot abort a multipart upload (s3:AbortMultipartUpload)",
                       exc) from None

    def open_writer(self, name: str, size_hint: int) -> _MultipartWriter:
        key = self.key(name)
        try:
            upload = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType="application/octet-stream"
            )
        except Exception as exc:
            raise fail(self.uri, f"cannot start the upload of {name}", exc) from None
        return _MultipartWriter(self, key, upload["UploadId"], part_size(size_hint, MAX_PARTS))

    def put(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data,
                                   ContentType="application/json")
        except Exception as exc:
            raise fail(self.uri, f"cannot write {name}", exc) from None

    def read(self, name: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"]
        except Exception as exc:
            raise fail(self.uri, f"cannot read {name}", exc) from None
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def size(self, name: str) -> int:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self.key(name))
                       ["ContentLength"])
        except Exception as exc:
            raise fail(self.uri, f"cannot stat {name}", exc) from None

    def list(self) -> list[str]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        names: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix):]
                    if name and not name.startswith("."):
                        names.append(name)
        except Exception as exc:
            raise fail(self.uri, "cannot list", exc) from None
        return sorted(names)

    def delete(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        except Exception as exc:
            raise fail(self.uri, f"cannot delete {name}", exc) from None


class _MultipartWriter(ChunkedWriter):
    max_parts = MAX_PARTS
    max_part = MAX_PART

    def __init__(self, target: S3Target, key: str, upload_id: str, base_part: int) -> None:
        super().__init__(target.uri, key, base_part, in_flight=IN_FLIGHT)
        self.t, self.key, self.upload_id = target, key, upload_id

    def upload_part(self, number: int, chunk: bytes) -> dict[str, Any]:
        resp = self.t.client.upload_part(Bucket=self.t.bucket, Key=self.key,
                                         UploadId=self.upload_id, PartNumber=number, Body=chunk)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def finish(self, parts: list[Any]) -> None:
        self.t.client.complete_multipart_upload(
            Bucket=self.t.bucket, Key=self.key, UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )

    def discard(self) -> None:
        self.t.client.abort_multipart_upload(Bucket=self.t.bucket, Key=self.key,
                                             UploadId=self.upload_id)
