"""Blobs on the control plane's disk: task bundles and outputs.

A blob becomes visible only when it is complete: it is written to a temporary file and renamed
into place, so a reader never sees half an upload.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from taskyard.errors import InvalidInput, TooLarge


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int,
        sha256: str | None = None,
        check: Callable[[Path, int], None] | None = None,
    ) -> int:
        """Store a streamed upload under ``key``; check its size and, if given, its sha256.

        ``check(path, size)`` (on a worker thread) may refuse the complete upload before it is published.
        """
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"upload is larger than the limit of {max_bytes // (1024 * 1024)} MB")
                    digest.update(chunk)
                    out.write(chunk)
            if sha256 is not None and digest.hexdigest() != sha256:
                raise InvalidInput("upload does not match its sha256; it was changed or cut short")
            if check is not None:
                await run_in_threadpool(check, Path(tmp), size)
            self._publish(tmp, key)
            return size
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (small blobs only: it is written at once)."""
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        self._publish(tmp, key)

    def _publish(self, tmp: str, key: str) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)


def bundle_key(user_id: int, sha256: str) -> str:
    return f"bundles/{user_id}/{sha256}.tar.gz"


def outputs_key(task_id: str, attempt: int, partial: bool) -> str:
    kind = "partial" if partial else "result"
    return f"outputs/{task_id}/{attempt}-{kind}.tar.gz"
