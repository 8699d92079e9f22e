"""``entraide content drafts list|publish|refuse``: members' drafts decided from the command line
with the drafts service (decision 65), on both engines; refusals are one line, exit code 1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from federation.types import utc_now
from server.db.models import Actor, AuditEntry, Draft, RemoteObject
from tests.server.test_cli_admin import _cli
from tests.server.test_cli_publish import _db_url, _node, _query


async def _draft(url: str, name: str) -> int:
    """mia's pending alert draft in demo, as the drafts service stores it."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            ids = dict(
                (await conn.execute(select(Actor.handle, Actor.id).where(Actor.local.is_(True)))).all()
            )
            fields = {"name": name, "content": "Texte.", "severity": "info", "category": "other"}
            values = {"group_id": ids["demo"], "author_id": ids["mia"], "kind": "alert", "fields": fields}
            result = await conn.execute(
                insert(Draft)
                .values(state="pending", created_at=utc_now(), reason="", **values)
                .returning(Draft.id)
            )
            return int(result.scalar_one())
    finally:
        await engine.dispose()


def test_drafts_are_listed_published_and_refused_from_the_command_line(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    first = asyncio.run(_draft(url, "Première"))
    second = asyncio.run(_draft(url, "Seconde"))
    code, out, err = _cli(capsys, "content", "drafts", "list", "--as", "demo", "--config", config)
    assert code == 0, err
    assert [line.split("\t") for line in out.splitlines()] == [
        [str(second), "alert", "pending", "@mia", "Seconde"],
        [str(first), "alert", "pending", "@mia", "Première"],
    ]
    # mia is no editor: refused in one line
    code, out, err = _cli(
        capsys, "content", "drafts", "publish", str(first), "--as", "demo", "--by", "mia", "--config", config
    )
    assert (code, out) == (1, "") and "mia is not an admin or moderator" in err
    code, out, err = _cli(
        capsys, "content", "drafts", "publish", str(first), "--as", "demo", "--by", "mo", "--config", config
    )
    assert code == 0, err
    [(kind, name)] = asyncio.run(
        _query(
            url,
            select(RemoteObject.kind, RemoteObject.document["name"]).where(RemoteObject.iri == out.strip()),
        )
    )
    assert kind == "alert" and name == "Première"
    code, out, err = _cli(
        capsys, "content", "drafts", "publish", str(first), "--as", "demo", "--config", config
    )
    assert code == 1 and "already" in err
    code, _, err = _cli(
        capsys,
        "content",
        "drafts",
        "refuse",
        str(second),
        "--as",
        "demo",
        "--reason",
        "Doublon",
        "--config",
        config,
    )
    assert code == 0, err
    [(detail,)] = asyncio.run(
        _query(url, select(AuditEntry.detail).where(AuditEntry.action == "draft.refuse"))
    )
    assert detail["reason"] == "Doublon"
    code, out, _ = _cli(
        capsys, "content", "drafts", "list", "--as", "demo", "--state", "refused", "--config", config
    )
    assert out.split("\t")[0] == str(second)
