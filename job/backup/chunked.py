"""A writer that cuts a stream into growing parts and uploads them from background threads.

Shared by the S3 (multipart) and Azure (staged blocks) targets: the pipe from pg_dump keeps
flowing while up to ``in_flight`` parts are buffered or uploading, which bounds memory to
``in_flight`` x part size. Subclasses say how to upload one part, how to make the object
visible from the uploaded parts, and how to discard them.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from job.backup.target import fail, grown_part_size
from job.errors import BackupError


class ChunkedWriter:
    max_parts = 10_000
    max_part = 5 * 1024**3

    def __init__(self, uri: str, label: str, base_part: int, *, in_flight: int = 3,
                 threads: int = 2) -> None:
        self.uri, self.label, self.base = uri, label, base_part
        self.buf = bytearray()
        self.number = 0
        self.futures: list[Future[Any]] = []
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="backup-part")
        self.slots = threading.BoundedSemaphore(in_flight)
        self.done = False

    # -- for subclasses -----------------------------------------------------------------------
    def upload_part(self, number: int, chunk: bytes) -> Any:
        raise NotImplementedError

    def finish(self, parts: list[Any]) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError

    # -- Writer --------------------------------------------------------------------------------
    def next_part_size(self) -> int:
        return grown_part_size(self.base, self.number + 1, self.max_parts, self.max_part)

    def write(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= (size := self.next_part_size()):
            chunk = bytes(self.buf[:size])
            del self.buf[:size]
            self._submit(chunk)

    def _submit(self, chunk: bytes) -> None:
        for f in self.futures:  # surface a failed part now rather than at the end
            if f.done() and f.exception() is not None:
                f.result()
        self.number += 1
        self.slots.acquire()
        fut = self.pool.submit(self._upload, self.number, chunk)
        fut.add_done_callback(lambda _: self.slots.release())
        self.futures.append(fut)

    def _upload(self, number: int, chunk: bytes) -> Any:
        try:
            return self.upload_part(number, chunk)
        except Exception as exc:
            raise fail(self.uri, f"uploading part {number} of {self.label} failed", exc) from None

    def complete(self) -> None:
        try:
            if self.buf or self.number == 0:
                self._submit(bytes(self.buf))
                self.buf.clear()
            parts = [f.result() for f in self.futures]
            self.finish(parts)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, Exception) and not isinstance(exc, BackupError):
                raise fail(self.uri, f"completing {self.label} failed", exc) from None
            raise
        self.done = True
        self.pool.shutdown(wait=True)

    def abort(self) -> str | None:
        if self.done:
            return None
        self.done = True
        for f in self.futures:
            f.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.buf.clear()
        try:
            self.discard()
        except Exception as exc:  # the caller is already failing: report, do not mask
            return f"discarding the partial upload of {self.label} failed: {exc}"
        return None
