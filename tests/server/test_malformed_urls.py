"""URLs that do not parse (``urlsplit`` raises on an unbalanced ``[`` in the host) are refused like any other
bad address, on every path that takes one from outside: a 4xx answer or a skipped item, never a 500.

Found by the OpenAPI fuzz: a reply whose ``inReplyTo`` was ``https://…]<7`` made the fetch guard raise.
"""

from __future__ import annotations

import pytest

from federation.delivery import Recipient, plan_delivery
from federation.types import Iri
from federation.webfinger import is_http_resource
from server.http.pages.core import safe_next
from tests.server.test_api import Api, _people
from tests.support.nodes import Node

BROKEN = ["https://[x", "https://a]b/c", "http://[::1/notes/1", "https://\uc738\u00ce\u00ac]<7"]


@pytest.mark.parametrize("url", BROKEN)
def test_helpers_say_no_instead_of_raising(url: str) -> None:
    assert is_http_resource(url) is False
    assert safe_next(url) is False
    ok = Recipient(actor=Iri("https://ok.example/users/a"), inbox=Iri("https://ok.example/inbox"))
    broken = Recipient(actor=Iri("https://bad.example/users/b"), inbox=Iri(url))
    assert [t.inbox for t in plan_delivery([broken, ok], prefer_shared_inbox=False)] == [ok.inbox]


async def test_a_reply_to_a_url_that_does_not_parse_is_taken_as_one_to_an_unreachable_parent(
    node: Node,
) -> None:
    """As for a parent that cannot be fetched, the reply is published without one (never a 500)."""
    api, t = Api(node), await _people(node)
    for url in BROKEN:
        body = {"content": "<p>Réponse</p>", "inReplyTo": url}
        status, answer, _ = await api.call("POST", "/api/users/mia/replies", token=t["mia"], body=body)
        unreachable = {"content": "<p>Réponse</p>", "inReplyTo": "http://127.0.0.1:9/notes/1"}
        expected, _, _ = await api.call("POST", "/api/users/mia/replies", token=t["mia"], body=unreachable)
        assert status == expected and status < 500, (url, status, answer)


async def test_webfinger_and_pages_answer_a_client_error(node: Node) -> None:
    for url in BROKEN:
        response = await node.client.get("/.well-known/webfinger", params={"resource": url})
        assert 400 <= response.status < 500, (url, response.status)
        response = await node.client.get("/login", params={"next": url})
        assert response.status == 200, (url, response.status)
