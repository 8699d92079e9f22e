"""Security regressions of the event pages (issue 18, web part), on both engines: cases 84-85 of
docs/security.md.

84: a members-only event listed in an agenda, shown on its page or joinable by someone who may
not read it; the answer for a hidden event is a missing one's.
85: the participation and organisers' forms posted from another site or without the session's
token, and the participant list or its decisions by a plain member or another association's
admin.
"""

from __future__ import annotations

from sqlalchemy import select

from server.db.models import Event, EventParticipant
from tests.server.test_web_account import _csrf
from tests.server.test_web_events import _actor, _path, _publish
from tests.server.test_web_publish import HTML, _as, _get, _world
from tests.support.nodes import Node


async def test_sec_84_a_members_only_event_is_hidden_from_agendas_pages_and_joins(node: Node) -> None:
    await _world(node)
    hidden = await _publish(node, name="Groupe de parole", visibility="members", joinMode="free")
    missing = hidden[:-6] + "000000"
    await _as(node, "bea")  # signed in, but not a member of alpha
    for listing in ("/events", "/groups/alpha/events", "/events?after=19700101T000000000000-0"):
        assert "Groupe de parole" not in await _get(node, listing)
    hidden_page = await node.client.get(_path(hidden), headers=HTML)
    missing_page = await node.client.get(_path(missing), headers=HTML)
    assert hidden_page.status == missing_page.status == 404
    assert await hidden_page.text() == await missing_page.text()
    csrf = _csrf(await _get(node, "/events"))
    for target in (hidden, missing):
        joined = await node.client.post(
            _path(target) + "/participation", data={"csrf": csrf, "action": "join"}, headers=HTML
        )
        assert joined.status == 404
    assert await node.scalar(select(EventParticipant.id)) is None


async def test_sec_85_event_forms_need_the_session_token_and_the_organisers_role(node: Node) -> None:
    await _world(node)
    iri = await _publish(node, joinMode="restricted")
    await _as(node, "paul")
    csrf = _csrf(await _get(node, _path(iri)))
    forged = [
        {"action": "join"},  # no token
        {"action": "join", "csrf": "forged"},
    ]
    for data in forged:
        response = await node.client.post(_path(iri) + "/participation", data=data, headers=HTML)
        assert response.status == 403
    other_site = await node.client.post(
        _path(iri) + "/participation",
        data={"csrf": csrf, "action": "join"},
        headers={**HTML, "Origin": "https://evil.example"},
    )
    assert other_site.status == 403 and await node.scalar(select(EventParticipant.id)) is None
    asked = await node.client.post(
        _path(iri) + "/participation",
        data={"csrf": csrf, "action": "join"},
        headers=HTML,
        allow_redirects=False,
    )
    assert asked.status == 303
    paul = await _actor(node, "paul")
    decision = {"csrf": csrf, "event": iri, "participant": paul.iri, "decision": "accept"}
    # paul (a plain member of alpha) and bea (admin of beta) may neither list nor decide, nor cancel.
    for who in ("paul", "bea"):
        await _as(node, who)
        await _get(node, f"/groups/alpha/events/participants?event={iri}", status=403)
        token = _csrf(await _get(node, "/events"))
        for path, data in (
            ("/groups/alpha/events/participants", {**decision, "csrf": token}),
            ("/groups/alpha/manage/cancel", {"csrf": token, "iri": iri, "confirm": "1"}),
        ):
            response = await node.client.post(path, data=data, headers=HTML, allow_redirects=False)
            assert response.status == 403, (who, path)
    # An admin's decision without the token is refused too.
    await _as(node, "alice")
    no_token = await node.client.post(
        "/groups/alpha/events/participants",
        data={**decision, "csrf": ""},
        headers=HTML,
        allow_redirects=False,
    )
    assert no_token.status == 403
    assert await node.scalar(select(EventParticipant.state)) == "pending"
    assert await node.scalar(select(Event.status)) == "confirmed"
