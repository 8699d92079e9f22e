"""Where uploaded files live: a local directory (the default) or an S3-compatible bucket.

Web processes on several machines must all serve every upload, so their media cannot stay on
one machine's disk: ``media.store = "s3"`` keeps them in a bucket (AWS S3, MinIO, Garage,
Scaleway, OVH…) through aiobotocore, installed with the ``s3`` extra. Uploads are still checked
and staged in a local temporary file first (``media.dir``), then handed to the store, so a
refused upload never reaches the bucket. Keys are the random upload keys; the bucket stays
private: files are served by the node, which checks visibility on every read.

A client is opened per operation: uploads and cache misses are rare next to the reads a proxy
or CDN answers from its cache (media are immutable, cached for a year).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from server.config import MediaSettings

CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An open stored file: its size and its bytes, read once in chunks."""

    size: int
    chunks: AsyncIterator[bytes]


class MediaStore(Protocol):
    async def put(self, key: str, source: Path, *, content_type: str) -> None:
        """Store the file ``source`` under ``key``; ``source`` is consumed (moved or removed)."""

    def open(self, key: str) -> AbstractAsyncContextManager[StoredFile | None]:
        """The file of ``key``, or None if it is missing."""

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""


def local_path(directory: Path, key: str) -> Path:
    """Where the file of ``key`` lives in a local store; ``key`` must already be valid."""
    return directory / key[:2] / key


class LocalStore:
    """Files under ``media.dir``, two hex digits of fan-out (``ab/abcdef…``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def put(self, key: str, source: Path, *, content_type: str) -> None:
        await asyncio.to_thread(os.replace, source, local_path(self.directory, key))

    def open(self, key: str) -> AbstractAsyncContextManager[StoredFile | None]:
        return _LocalOpen(local_path(self.directory, key))

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(local_path(self.directory, key).unlink, missing_ok=True)


class _LocalOpen:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: Any = None

    async def __aenter__(self) -> StoredFile | None:
        try:
            self.handle = await asyncio.to_thread(self.path.open, "rb")
        except FileNotFoundError:
            return None
        return StoredFile(os.fstat(self.handle.fileno()).st_size, self._chunks())

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await asyncio.to_thread(self.handle.read, CHUNK_BYTES):
            yield chunk

    async def __aexit__(self, *_exc: object) -> None:
        if self.handle is not None:
            await asyncio.to_thread(self.handle.close)


class S3Store:
    """Files in an S3-compatible bucket, under ``media.s3_prefix``."""

    def __init__(self, settings: MediaSettings) -> None:
        try:
            from aiobotocore.session import get_session
        except ImportError:  # pragma: no cover - the s3 extra is installed wherever s3 is configured
            raise RuntimeError("media.store = 's3' needs aiobotocore: pip install 'entraide[s3]'") from None
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self._session = get_session()
        self._client_args: dict[str, Any] = {
            "endpoint_url": settings.s3_endpoint or None,
            "region_name": settings.s3_region or None,
            "aws_access_key_id": settings.s3_access_key or None,
            "aws_secret_access_key": settings.s3_secret_key or None,
        }

    def _client(self) -> AbstractAsyncContextManager[Any]:
        return self._session.create_client("s3", **self._client_args)  # type: ignore[no-any-return]

    async def put(self, key: str, source: Path, *, content_type: str) -> None:
        try:
            body = await asyncio.to_thread(source.read_bytes)  # at most media.max_bytes
            async with self._client() as client:
                await client.put_object(
                    Bucket=self.bucket, Key=self.prefix + key, Body=body, ContentType=content_type
                )
        finally:
            await asyncio.to_thread(source.unlink, missing_ok=True)

    def open(self, key: str) -> AbstractAsyncContextManager[StoredFile | None]:
        return _S3Open(self, self.prefix + key)

    async def delete(self, key: str) -> None:
        async with self._client() as client:
            await client.delete_object(Bucket=self.bucket, Key=self.prefix + key)


class _S3Open:
    def __init__(self, store: S3Store, name: str) -> None:
        self.store = store
        self.name = name
        self.client_cm: AbstractAsyncContextManager[Any] | None = None
        self.body: Any = None

    async def __aenter__(self) -> StoredFile | None:
        self.client_cm = self.store._client()
        client = await self.client_cm.__aenter__()
        try:
            answer = await client.get_object(Bucket=self.store.bucket, Key=self.name)
        except client.exceptions.NoSuchKey:
            return None
        self.body = answer["Body"]
        return StoredFile(int(answer["ContentLength"]), self._chunks())

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.body.read(CHUNK_BYTES):
            yield chunk

    async def __aexit__(self, *exc: object) -> None:
        if self.body is not None:
            self.body.close()
        if self.client_cm is not None:
            await self.client_cm.__aexit__(None, None, None)


def media_store(settings: MediaSettings) -> MediaStore:
    """The store ``settings`` configure (``media.store``)."""
    return S3Store(settings) if settings.store == "s3" else LocalStore(settings.dir)
