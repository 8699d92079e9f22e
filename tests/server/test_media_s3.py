"""``media.store = "s3"``: uploads go to an S3-compatible bucket (moto's server on 127.0.0.1).

The node stages and checks an upload locally, then puts it in the bucket; it serves it from
the bucket (so any web process on any machine serves every upload) and the clean-up of
unattached uploads deletes it there. Nothing stays in the local media directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session
from aiohttp.test_utils import unused_port
from moto.server import ThreadedMotoServer

from server.config import ConfigError, build_settings
from server.services.media import uploads as media_service
from tests.server.test_media import alice, files_on_disk, form, png, upload
from tests.support.databases import SqliteTemplate
from tests.support.nodes import Node, running_node

BUCKET = "entraide-media"
CREDENTIALS = {"s3_access_key": "testing", "s3_secret_key": "testing-secret", "s3_region": "us-east-1"}


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    port = unused_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _client(endpoint: str) -> Any:
    return get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret",
    )


async def _names(endpoint: str) -> list[str]:
    async with _client(endpoint) as client:
        listing = await client.list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture
async def s3_node(tmp_path: Path, sqlite_template: SqliteTemplate, s3_endpoint: str) -> AsyncIterator[Node]:
    async with _client(s3_endpoint) as client:
        await client.create_bucket(Bucket=BUCKET)
    media = {"store": "s3", "s3_endpoint": s3_endpoint, "s3_bucket": BUCKET, "s3_prefix": "m/", **CREDENTIALS}
    async with running_node(tmp_path / "node", sqlite_template.copy_to(tmp_path), media=media) as node:
        yield node


async def test_uploads_are_stored_served_and_removed_in_the_bucket(s3_node: Node, s3_endpoint: str) -> None:
    node = s3_node
    token = await alice(node)
    image = png(3, 2)
    response = await upload(node, token, form(image))
    assert response.status == 201, await response.text()
    key = (await response.json())["key"]
    assert await _names(s3_endpoint) == [f"m/{key}"]
    assert files_on_disk(node) == []  # staged locally, then moved to the bucket

    served = await node.client.get(f"/media/{key}")
    assert served.status == 200 and await served.read() == image
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Content-Length"] == str(len(image))

    later = node.fed.node.clock() + media_service.UNATTACHED_TTL + timedelta(minutes=1)
    assert await media_service.remove_unattached(node.fed.node, now=later) == 1
    assert await _names(s3_endpoint) == []
    assert (await node.client.get(f"/media/{key}")).status == 404


async def test_a_missing_object_is_a_404_not_a_500(s3_node: Node, s3_endpoint: str) -> None:
    node = s3_node
    token = await alice(node)
    key = (await (await upload(node, token, form(png()))).json())["key"]
    async with _client(s3_endpoint) as client:
        await client.delete_object(Bucket=BUCKET, Key=f"m/{key}")
    response = await node.client.get(f"/media/{key}")
    assert response.status == 404 and response.content_type == "application/problem+json"


def test_s3_store_needs_a_bucket_and_hides_its_secret(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "server": {"origin": "https://asso.example"},
        "database": {"url": "sqlite+aiosqlite:///x"},
        "media": {"store": "s3", **CREDENTIALS},
    }
    with pytest.raises(ConfigError, match=r"media\.s3_bucket"):
        build_settings(raw, base_dir=tmp_path, environ={})
    settings = build_settings(raw, base_dir=tmp_path, environ={"ENTRAIDE_MEDIA__S3_BUCKET": BUCKET})
    shown = settings.as_document(redact=True)["media"]
    assert shown["s3_bucket"] == BUCKET and shown["s3_secret_key"] == "***"
