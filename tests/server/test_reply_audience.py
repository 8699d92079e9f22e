"""The reply-audience rule is the content service's (decision 71): a reply never shows to more
people than the content it answers, whether it comes from the JSON API, the C2S outbox or the
CLI. Before, only ``POST /api/users/{u}/replies`` checked it, so a C2S client's (or the CLI's)
public reply to followers-only content was published publicly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from federation.types import AS_PUBLIC
from server.db.models import RemoteObject
from tests.server.test_cli_publish import _node, _publish
from tests.support.nodes import Node


async def _followers_only_post(node: Node) -> tuple[str, str, str]:
    """demo's followers-only note (read by its admin alice), alice's token, demo's IRI."""
    demo = await node.create_association("demo")
    await node.add_member("alice", "demo", role="admin")
    token = await node.token("alice")
    posted = await node.post_outbox(
        "/groups/demo", token, {"type": "Note", "content": "<p>entre nous</p>", "visibility": "followers"}
    )
    return posted["object"], token, demo


async def _post(node: Node, path: str, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await node.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    return response.status, await response.json(content_type=None)


async def test_a_c2s_reply_to_followers_only_content_is_never_wider_than_it(node: Node) -> None:
    parent, token, demo = await _followers_only_post(node)
    before = await node.row_counts()
    # When alice replies through her C2S outbox, publicly or to her own followers
    for addressing in ({"to": [AS_PUBLIC]}, {"cc": [f"{node.uris.origin}/users/alice/followers"]}, {}):
        body = {"type": "Note", "content": "<p>vu</p>", "inReplyTo": parent, **addressing}
        status, problem = await _post(node, "/users/alice/outbox", token, body)
        # Then only a reply that addresses nobody (for herself alone, decision 37) is no wider
        if addressing:
            assert (status, problem.get("field")) == (400, "visibility"), problem
    # and nothing wider was stored
    rows = (await node.row_counts())["objects"] - before["objects"]
    assert rows == 1
    # When she replies directly to the association
    status, created = await _post(
        node,
        "/users/alice/outbox",
        token,
        {"type": "Note", "content": "<p>vu</p>", "inReplyTo": parent, "visibility": "direct", "to": [demo]},
    )
    # Then it is published, direct
    assert status == 201, created
    row = await node.scalar(select(RemoteObject).where(RemoteObject.iri == created["object"]))
    assert row.visibility == "direct"


async def test_the_api_and_the_c2s_outbox_give_the_same_answer(node: Node) -> None:
    parent, token, _ = await _followers_only_post(node)
    reply = {"content": "<p>vu</p>", "inReplyTo": parent, "visibility": "public"}
    api = await _post(node, "/api/users/alice/replies", token, reply)
    c2s = await _post(node, "/users/alice/outbox", token, {"type": "Note", **reply})
    assert api[0] == c2s[0] == 400
    assert (
        api[1]["detail"]
        == c2s[1]["detail"]
        == ("a reply to followers-only content must be direct (visibility direct, with to)")
    )


async def test_an_author_answers_its_own_followers_only_content_to_the_same_followers(node: Node) -> None:
    parent, token, _ = await _followers_only_post(node)
    # When the association answers its own followers-only note, followers-only
    body = {"type": "Note", "content": "<p>suite</p>", "inReplyTo": parent, "visibility": "followers"}
    answer = await node.post_outbox("/groups/demo", token, body)
    # Then it is published to the same followers
    row = await node.scalar(select(RemoteObject).where(RemoteObject.iri == answer["object"]))
    assert row.visibility == "followers"
    # but not publicly
    body = {"type": "Note", "content": "<p>x</p>", "inReplyTo": parent, "to": [AS_PUBLIC]}
    status, problem = await _post(node, "/groups/demo/outbox", token, body)
    assert (status, problem.get("field")) == (400, "visibility"), problem


def test_a_cli_reply_obeys_the_same_rule(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    common = ("--as", "demo", "--config", config)
    alert = ("alert", *common, "--title", "Eau", "--severity", "info", "--category", "other")
    code, out, err = _publish(capsys, *alert, "--visibility", "members", "--body-file", "-", stdin="Coupure.")
    assert code == 0, err
    members_only = out.strip()
    resource = ("resource", *common, "--title", "Fiche", "--visibility", "followers")
    code, out, err = _publish(capsys, *resource, "--body-file", "-", stdin="Pour nos abonnés.")
    assert code == 0, err
    followers_only = out.strip()
    # When the operator replies publicly (the default) to either, it is refused, naming the option
    for parent in (members_only, followers_only):
        reply = ("reply", *common, "--in-reply-to", parent)
        code, out, err = _publish(capsys, *reply, "--body-file", "-", stdin="Vu.")
        assert code != 0 and out == "", (out, err)
        assert "--visibility" in err, err
    # and a reply as wide as its parent is published
    for parent, level in ((members_only, "members"), (followers_only, "followers")):
        reply = ("reply", *common, "--in-reply-to", parent, "--visibility", level)
        code, out, err = _publish(capsys, *reply, "--body-file", "-", stdin="Vu.")
        assert code == 0, err
        assert out.startswith("http://127.0.0.1:8080/objects/")
