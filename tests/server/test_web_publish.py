"""Publishing from the browser, on both engines: an association's admins and moderators publish,
edit, extend, retract, supersede and delete alerts, resources (Markdown preview, attachment,
licence, revisions with a change note) and proposals (options, deadline, eligibility, closing
early), and co-sign another association's proposal, through the same services as the API; every
form refuses a forged post (CSRF) and a plain member (403), and bad input shows the form again
with the refusal next to its field and stores nothing. Members' drafts are never federated nor
shown to anyone but their author and the association's editors until published."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import aiohttp
from sqlalchemy import select

from federation.types import utc_now
from server.db.models import Activity, AuditEntry, Draft, Job, RemoteObject
from tests.server.test_media import png
from tests.server.test_web_account import _csrf, _sign_in
from tests.support.nodes import Node

SOON = (utc_now() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
HTML = {"Accept": "text/html,application/xhtml+xml", "Accept-Language": "en"}


async def _get(node: Node, path: str, status: int = 200) -> str:
    response = await node.client.get(path, headers=HTML, allow_redirects=False)
    text = await response.text()
    assert response.status == status, (path, response.status, text[:800])
    return text


async def _post(node: Node, page: str, target: str, /, **fields: str) -> Any:
    csrf = _csrf(await _get(node, page))
    return await node.client.post(target, data={"csrf": csrf, **fields}, headers=HTML, allow_redirects=False)


async def _world(node: Node) -> None:
    """alpha: alice (admin), mona (moderator), paul (member); beta: bea (admin)."""
    await node.create_association("alpha", "Alpha")
    await node.add_member("alice", "alpha", role="admin")
    await node.add_member("mona", "alpha", role="moderator")
    await node.add_member("paul", "alpha")
    await node.create_association("beta", "Beta")
    await node.add_member("bea", "beta", role="admin")


async def _as(node: Node, username: str) -> None:
    node.client.session.cookie_jar.clear()
    assert (await _sign_in(node.client, username)).status == 303


async def _object(node: Node, location: str) -> RemoteObject:
    iri = node.uris.iri(location)
    row = await node.scalar(select(RemoteObject).where(RemoteObject.iri == iri))
    assert row is not None, location
    return row


ALERT = {
    "name": "Rupture d'insuline",
    "severity": "critical",
    "category": "shortage",
    "content": "Plus de stock à la pharmacie centrale.",
    "area": "Lyon",
    "areaCode": "FR-69",
    "validUntil": "2030-01-01T12:00",
    "visibility": "public",
}


async def test_an_admin_publishes_an_alert_extends_it_supersedes_and_retracts(node: Node) -> None:
    await _world(node)
    await _as(node, "alice")
    page = await _get(node, "/groups/alpha/manage/new/alert")
    assert 'name="severity"' in page and 'type="datetime-local"' in page
    created = await _post(node, "/groups/alpha/manage/new/alert", "/groups/alpha/manage/new/alert", **ALERT)
    assert created.status == 303 and created.headers["Location"].startswith("/objects/")
    row = await _object(node, created.headers["Location"])
    doc = row.document
    assert row.kind == "alert" and doc["severity"] == "critical" and doc["alertStatus"] == "active"
    assert doc["validUntil"].startswith("2030-01-01T12:00") and doc["areaCode"] == "FR-69"
    # the Create goes out through the same pipeline as the API's (a fan-out job)
    assert await node.scalar(
        select(Activity.id).where(Activity.object_iri == row.iri, Activity.type == "Create")
    )

    # The manage page lists it; the edit form extends its validity with a change note.
    listing = await _get(node, "/groups/alpha/manage")
    assert "Rupture" in listing and "Active" in listing
    edit_page = f"/groups/alpha/manage/edit?iri={row.iri}"
    form = await _get(node, edit_page)
    assert 'value="2030-01-01T12:00"' in form and "Retract the alert" in form
    extended = await _post(
        node, edit_page, "/groups/alpha/manage/edit",
        **{**ALERT, "iri": row.iri, "validUntil": "2031-06-30T08:00", "changeNote": "Prolongée"},
    )  # fmt: skip
    assert extended.status == 303
    row = await _object(node, created.headers["Location"])
    assert row.document["validUntil"].startswith("2031-06-30T08:00")
    entry = await node.scalar(select(AuditEntry).where(AuditEntry.action == "alert.update"))
    assert entry is not None and entry.channel == "web" and entry.detail.get("note") == "Prolongée"

    # Superseding: the form for the successor carries the link, both alerts point at each other.
    successor_page = f"/groups/alpha/manage/new/alert?supersedes={row.iri}"
    assert row.iri in await _get(node, successor_page)
    successor = await _post(
        node, successor_page, "/groups/alpha/manage/new/alert",
        **{**ALERT, "name": "Insuline : nouvelle livraison", "supersedes": row.iri},
    )  # fmt: skip
    assert successor.status == 303
    new = await _object(node, successor.headers["Location"])
    old = await _object(node, created.headers["Location"])
    assert new.document["supersedes"] == old.iri and old.document["alertStatus"] == "superseded"
    assert old.document["supersededBy"] == new.iri

    # Retracting the successor.
    retracted = await _post(
        node, f"/groups/alpha/manage/edit?iri={new.iri}", "/groups/alpha/manage/retract", iri=new.iri
    )
    assert retracted.status == 303 and retracted.headers["Location"] == "/groups/alpha/manage?done=retracted"
    new = await _object(node, successor.headers["Location"])
    assert new.document["alertStatus"] == "retracted"
    assert "The alert was retracted." in await _get(node, "/groups/alpha/manage?done=retracted")
    # A second retraction is refused by the service and said so, nothing changes.
    again = await _post(node, "/groups/alpha/manage", "/groups/alpha/manage/retract", iri=new.iri)
    assert again.headers["Location"] == "/groups/alpha/manage?done=refused_retracted"


async def test_a_resource_is_previewed_published_with_attachment_and_licence_then_revised(node: Node) -> None:
    await _world(node)
    await _as(node, "mona")  # a moderator acts for the association too
    page = await _get(node, "/groups/alpha/manage/new/resource")
    assert 'enctype="multipart/form-data"' in page and "Preview" in page
    before = await node.row_counts()
    text = "# Guide\n\nDes **conseils** pour l'accès aux soins.\n\n<script>alert(1)</script>"
    preview = await _post(
        node, "/groups/alpha/manage/new/resource", "/groups/alpha/manage/new/resource",
        name="Guide", content=text, action="preview",
    )  # fmt: skip
    body = await preview.text()
    assert preview.status == 200 and "<h1>Guide</h1>" in body and "<strong>conseils</strong>" in body
    assert "<script>alert(1)" not in body  # the preview is rendered and sanitised like the page
    assert await node.row_counts() == before  # a preview stores nothing

    csrf = _csrf(page)
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("csrf", csrf)
    for name, value in {
        "name": "Guide",
        "summary": "Pour tous",
        "content": text,
        "license": "https://creativecommons.org/licenses/by-sa/4.0/",
        "visibility": "public",
        "description": "Une carte",
    }.items():
        form.add_field(name, value)
    form.add_field("attachment", png(), filename="carte.png", content_type="image/png")
    created = await node.client.post(
        "/groups/alpha/manage/new/resource", data=form, headers=HTML, allow_redirects=False
    )
    assert created.status == 303, await created.text()
    row = await _object(node, created.headers["Location"])
    assert row.kind == "resource" and row.document["license"].endswith("/by-sa/4.0/")
    [attachment] = row.document["attachment"]
    assert attachment["mediaType"] == "image/png" and attachment.get("name") == "Une carte"
    shown = await _get(node, created.headers["Location"])
    assert "<h1>Guide</h1>" in shown

    # A new revision with a change note, listed in the history.
    edit_page = f"/groups/alpha/manage/edit?iri={row.iri}"
    form_html = await _get(node, edit_page)
    assert "# Guide" in unescape(form_html)  # the Markdown as written
    revised = await _post(
        node, edit_page, "/groups/alpha/manage/edit",
        iri=row.iri, name="Guide (2e édition)", content=text + "\n\nMis à jour.",
        license="https://creativecommons.org/publicdomain/zero/1.0/", changeNote="Ajout d'une phrase",
    )  # fmt: skip
    assert revised.status == 303
    row = await _object(node, created.headers["Location"])
    assert row.document["name"] == "Guide (2e édition)" and row.document["license"].endswith("/zero/1.0/")
    update = await node.scalar(
        select(Activity).where(Activity.object_iri == row.iri, Activity.type == "Update")
    )
    assert update is not None and "Ajout d" in update.document.get("summary", "")


async def test_a_proposal_with_options_deadline_and_eligibility_is_closed_early(node: Node) -> None:
    await _world(node)
    await _as(node, "alice")
    created = await _post(
        node, "/groups/alpha/manage/new/proposal", "/groups/alpha/manage/new/proposal",
        name="Nouveau local ?", options="Oui\nNon\n\nSans avis", multiple="1",
        endTime=SOON, eligibility="members", visibility="public",
    )  # fmt: skip
    assert created.status == 303, await created.text()
    row = await _object(node, created.headers["Location"])
    assert [o["name"] for o in row.document["anyOf"]] == ["Oui", "Non", "Sans avis"]
    assert row.document["endTime"].startswith(SOON) and row.document["eligibility"] == "members"
    edit_page = f"/groups/alpha/manage/edit?iri={row.iri}"
    assert "Close the vote now" in await _get(node, edit_page)
    closed = await _post(node, edit_page, "/groups/alpha/manage/close", iri=row.iri)
    assert closed.headers["Location"] == "/groups/alpha/manage?done=closed"
    row = await _object(node, created.headers["Location"])
    assert row.document.get("closed") or row.document.get("proposalStatus") == "closed"


async def test_an_association_co_signs_another_associations_proposal(node: Node) -> None:
    await _world(node)
    await _as(node, "alice")
    created = await _post(
        node, "/groups/alpha/manage/new/proposal", "/groups/alpha/manage/new/proposal",
        name="Une charte commune", options="Pour\nContre", eligibility="associations", visibility="public",
    )  # fmt: skip
    proposal = await _object(node, created.headers["Location"])
    # Its own proposal: refused next to the field, nothing stored.
    before = await node.row_counts()
    own = await _post(node, "/groups/alpha/manage", "/groups/alpha/manage/endorse", proposal=proposal.iri)
    assert own.status == 400 and "does not endorse its own proposal" in await own.text()
    assert await node.row_counts() == before
    await _as(node, "bea")
    signed = await _post(
        node,
        "/groups/beta/manage",
        "/groups/beta/manage/endorse",
        proposal=proposal.iri,
        statement="Nous aussi.",
    )
    assert signed.status == 303 and signed.headers["Location"] == "/groups/beta/manage?done=endorsed"
    endorsement = await node.scalar(
        select(RemoteObject).where(
            RemoteObject.kind == "endorsement", RemoteObject.in_reply_to_iri == proposal.iri
        )
    )
    assert endorsement is not None


async def test_bad_input_shows_the_form_again_with_the_refusal_and_stores_nothing(node: Node) -> None:
    await _world(node)
    await _as(node, "alice")
    before = await node.row_counts()
    cases = [
        ("alert", {**ALERT, "severity": "apocalyptic"}, "severity"),
        ("alert", {**ALERT, "validUntil": "next tuesday"}, "validUntil"),
        ("alert", {**ALERT, "areaCode": "Lyon"}, "areaCode"),
        ("alert", {**ALERT, "name": ""}, "name"),
        ("resource", {"name": "R", "content": "x", "license": "not a licence"}, "license"),
        ("proposal", {"name": "Q", "options": "Seule option"}, "options"),
        ("proposal", {"name": "Q", "options": "A\nB", "endTime": "2001-01-01T00:00"}, "endTime"),
        ("proposal", {"name": "Q", "options": "A\nB", "eligibility": "everybody"}, "eligibility"),
    ]
    for kind, fields, field in cases:
        page = f"/groups/alpha/manage/new/{kind}"
        response = await _post(node, page, page, **fields)
        body = await response.text()
        assert response.status == 400, (kind, field, body[:300])
        assert f'id="{field}-error"' in body and "Nothing was published" in body, (kind, field)
        if fields.get("name"):
            assert f'value="{fields["name"]}"' in unescape(body)  # the input is kept
    assert await node.row_counts() == before


async def test_every_form_refuses_a_forged_post(node: Node) -> None:
    await _world(node)
    await _as(node, "alice")
    created = await _post(node, "/groups/alpha/manage/new/alert", "/groups/alpha/manage/new/alert", **ALERT)
    iri = (await _object(node, created.headers["Location"])).iri
    await _post(node, "/groups/alpha/drafts/new/alert", "/groups/alpha/drafts/new/alert", **ALERT)
    draft_id = await node.scalar(select(Draft.id))
    before = await node.row_counts()
    actions = {
        "/groups/alpha/manage/new/alert": ALERT,
        "/groups/alpha/manage/new/resource": {"name": "R", "content": "x"},
        "/groups/alpha/manage/new/proposal": {"name": "Q", "options": "A\nB"},
        "/groups/alpha/manage/edit": {"iri": iri, "name": "Changé"},
        "/groups/alpha/manage/retract": {"iri": iri},
        "/groups/alpha/manage/delete": {"iri": iri},
        "/groups/alpha/manage/close": {"iri": iri},
        "/groups/alpha/manage/endorse": {"proposal": iri},
        "/groups/alpha/drafts/new/alert": ALERT,
        f"/groups/alpha/drafts/{draft_id}/publish": {},
        f"/groups/alpha/drafts/{draft_id}/refuse": {},
    }
    for action, fields in actions.items():
        for csrf in ({}, {"csrf": "forged"}):
            response = await node.client.post(
                action, data={**csrf, **fields}, headers=HTML, allow_redirects=False
            )
            assert response.status == 403, (action, csrf, response.status)
        other_site = await node.client.post(
            action,
            data={"csrf": _csrf(await _get(node, "/groups/alpha/manage")), **fields},
            headers={**HTML, "Origin": "https://evil.example"},
            allow_redirects=False,
        )
        assert other_site.status == 403, action
        multipart = aiohttp.FormData()
        multipart.add_field("csrf", "forged")
        for name, value in fields.items():
            multipart.add_field(name, value)
        assert (await node.client.post(action, data=multipart, headers=HTML)).status == 403, action
    assert await node.row_counts() == before


async def test_a_plain_member_may_not_manage_the_associations_content(node: Node) -> None:
    await _world(node)
    await _as(node, "alice")
    created = await _post(node, "/groups/alpha/manage/new/alert", "/groups/alpha/manage/new/alert", **ALERT)
    iri = (await _object(node, created.headers["Location"])).iri
    await _as(node, "paul")
    before = await node.row_counts()
    for path in (
        "/groups/alpha/manage",
        "/groups/alpha/manage/new/alert",
        f"/groups/alpha/manage/edit?iri={iri}",
    ):
        await _get(node, path, 403)
    csrf = _csrf(await _get(node, "/groups/alpha/drafts"))
    for action, fields in {
        "/groups/alpha/manage/new/alert": ALERT,
        "/groups/alpha/manage/edit": {"iri": iri, "name": "Changé"},
        "/groups/alpha/manage/retract": {"iri": iri},
        "/groups/alpha/manage/delete": {"iri": iri},
        "/groups/alpha/manage/endorse": {"proposal": iri},
    }.items():
        response = await node.client.post(
            action, data={"csrf": csrf, **fields}, headers=HTML, allow_redirects=False
        )
        assert response.status == 403, action
    # bea administers beta, not alpha: alpha's content is not hers to manage.
    await _as(node, "bea")
    await _get(node, "/groups/alpha/manage", 403)
    await _get(node, f"/groups/beta/manage/edit?iri={iri}", 404)  # not beta's object
    # Signed out: to the sign-in page.
    node.client.session.cookie_jar.clear()
    response = await node.client.get("/groups/alpha/manage", headers=HTML, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/login?next=")
    after = await node.row_counts()
    assert {**after, "web_sessions": 0} == {**before, "web_sessions": 0}  # signing in aside


async def test_a_members_draft_stays_private_until_an_editor_publishes_it(node: Node) -> None:
    await _world(node)
    await node.add_member("zoe", "alpha")
    await _as(node, "paul")
    assert "Propose a publication" in await _get(node, "/groups/alpha")
    submitted = await _post(
        node, "/groups/alpha/drafts/new/alert", "/groups/alpha/drafts/new/alert",
        **{**ALERT, "name": "Brouillon secret", "visibility": "members"},
    )  # fmt: skip
    assert submitted.status == 303 and submitted.headers["Location"] == "/groups/alpha/drafts?done=submitted"
    draft = await node.scalar(select(Draft))
    assert draft is not None and draft.state == "pending" and draft.fields["name"] == "Brouillon secret"
    # Nothing was published, queued or delivered for it.
    async with node.sessions() as session:
        names = [r.document.get("name") for r in (await session.scalars(select(RemoteObject))).all()]
        jobs = [j.payload for j in (await session.scalars(select(Job))).all()]
    assert "Brouillon secret" not in names and "Brouillon secret" not in repr(jobs)
    mine = await _get(node, "/groups/alpha/drafts")
    assert "Brouillon secret" in mine and f"/drafts/{draft.id}/publish" not in mine  # not hers to decide

    # Another member, a visitor, the association's outbox and feeds never show it.
    await _as(node, "zoe")
    assert "Brouillon secret" not in await _get(node, "/groups/alpha/drafts")
    response = await node.client.post(
        f"/groups/alpha/drafts/{draft.id}/publish",
        data={"csrf": _csrf(await _get(node, "/groups/alpha/drafts"))},
        headers=HTML,
        allow_redirects=False,
    )
    assert response.status == 403
    node.client.session.cookie_jar.clear()
    for path in ("/groups/alpha", "/groups/alpha/outbox?page=true", "/groups/alpha/feed.atom"):
        response = await node.client.get(path)
        assert "Brouillon secret" not in await response.text(), path

    # An editor publishes it as the association.
    await _as(node, "mona")
    pending = await _get(node, "/groups/alpha/drafts")
    assert "Brouillon secret" in pending and f"/drafts/{draft.id}/publish" in pending
    published = await _post(node, "/groups/alpha/drafts", f"/groups/alpha/drafts/{draft.id}/publish")
    assert published.status == 303
    row = await _object(node, published.headers["Location"])
    assert row.kind == "alert" and row.visibility == "members" and row.document["name"] == "Brouillon secret"
    async with node.sessions() as session:
        stored = await session.get(Draft, draft.id)
        assert stored is not None and stored.state == "published" and stored.object_iri == row.iri
    # A second decision is refused (the draft is no longer pending).
    again = await _post(node, "/groups/alpha/drafts", f"/groups/alpha/drafts/{draft.id}/publish")
    assert again.status == 409 or again.status == 400


async def test_an_editor_refuses_a_draft_with_a_reason_its_author_reads(node: Node) -> None:
    await _world(node)
    await _as(node, "paul")
    bad = await _post(
        node,
        "/groups/alpha/drafts/new/proposal",
        "/groups/alpha/drafts/new/proposal",
        name="Q",
        options="Seule",
    )
    assert bad.status == 400 and 'id="options-error"' in await bad.text()
    assert await node.scalar(select(Draft.id)) is None
    await _post(
        node, "/groups/alpha/drafts/new/proposal", "/groups/alpha/drafts/new/proposal",
        name="Repas partagé ?", options="Samedi\nDimanche",
    )  # fmt: skip
    draft_id = await node.scalar(select(Draft.id))
    await _as(node, "alice")
    refused = await _post(
        node, "/groups/alpha/drafts", f"/groups/alpha/drafts/{draft_id}/refuse", reason="Déjà proposé"
    )
    assert refused.status == 303
    entry = await node.scalar(select(AuditEntry).where(AuditEntry.action == "draft.refuse"))
    assert entry is not None and entry.detail["reason"] == "Déjà proposé"
    await _as(node, "paul")
    page = await _get(node, "/groups/alpha/drafts")
    assert re.search(r"Reason:\s*Déjà proposé", unescape(page))
    assert await node.scalar(select(RemoteObject.id).where(RemoteObject.kind == "proposal")) is None
