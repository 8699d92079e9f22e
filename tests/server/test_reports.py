"""Moderation reports on both engines: a member files one, the association's admins and moderators
see it (another association's do not), the reporter is hidden from the reported party, and each
action (dismiss, remove, warn, remove the member, forward) does what it says and is audited. A
forwarded report is a ``Flag`` from the node's Application actor that never names the reporter.
Every API answer is checked against the OpenAPI document (``Api``)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from federation.types import AS_PUBLIC, utc_now
from server.db.models import (
    Account,
    Activity,
    Actor,
    AuditEntry,
    InboxActivity,
    Job,
    Membership,
    RemoteObject,
    Report,
)
from tests.server.test_api import Api, _people
from tests.support.nodes import Node, running_node, wait_until
from tests.support.world import follow_state, object_row

PEER_NOTE = "http://127.0.0.1:9/notes/1"
PEER_AUTHOR = "http://127.0.0.1:9/users/zoe"


async def _scene(node: Node) -> tuple[Api, dict[str, str], dict[str, str]]:
    """demo (alice admin, mo moderator, mia member), other (olga admin, zed member); a public post
    of demo and one of other; a peer's note held here."""
    api, tokens = Api(node), await _people(node)
    posts = {
        "demo": (await api.create("demo", "posts", tokens["alice"], {"content": "<p>Bonjour</p>"}))["id"],
        "other": (await api.create("other", "posts", tokens["olga"], {"content": "<p>Salut</p>"}))["id"],
    }
    now = utc_now()
    async with node.sessions.begin() as session:
        zoe = Actor(
            iri=PEER_AUTHOR,
            local=False,
            type="Person",
            handle="zoe",
            host="127.0.0.1:9",
            inbox_iri=PEER_AUTHOR + "/inbox",
            created_at=now,
            updated_at=now,
        )
        session.add(zoe)
        await session.flush()
        session.add(
            RemoteObject(
                iri=PEER_NOTE,
                local=False,
                type="Note",
                kind="post",
                attributed_to_id=zoe.id,
                visibility="public",
                document={"id": PEER_NOTE, "type": "Note", "content": "<p>spam</p>", "to": [AS_PUBLIC]},
                published=now,
                received_at=now,
            )
        )
    posts["peer"] = PEER_NOTE
    return api, tokens, posts


async def _file(api: Api, token: str, target: str, comment: str = "Pas correct") -> int:
    status, answer, _ = await api.call(
        "POST", "/api/reports", token=token, body={"target": target, "comment": comment}
    )
    assert status == 201, answer
    return int(answer["id"])


async def _queue(api: Api, token: str, **params: str) -> tuple[int, Any]:
    status, answer, _ = await api.call("GET", "/api/reports", token=token, params=params or None)
    return status, answer


async def _act(api: Api, token: str, report: int, action: str, text: str | None = None) -> tuple[int, Any]:
    body = {"action": action, **({"text": text} if text is not None else {})}
    status, answer, _ = await api.call("POST", f"/api/reports/{report}/actions", token=token, body=body)
    return status, answer


async def _node_admin(node: Node, username: str) -> None:
    async with node.sessions.begin() as session:
        actor = await session.scalar(select(Actor).where(Actor.handle == username, Actor.local.is_(True)))
        account = await session.get(Account, actor.id)  # type: ignore[union-attr]
        assert account is not None
        account.is_node_admin = True


async def test_a_moderator_sees_the_reports_of_their_association_only(node: Node) -> None:
    api, t, posts = await _scene(node)
    on_demo = await _file(api, t["zed"], posts["demo"], "Propos blessants")
    on_other = await _file(api, t["mia"], posts["other"])
    # alice and mo moderate demo: they see its report, not other's
    for who in ("alice", "mo"):
        status, page = await _queue(api, t[who], association="demo")
        assert status == 200 and [r["id"] for r in page["items"]] == [on_demo], who
        assert page["items"][0]["comment"] == "Propos blessants" and page["items"][0]["local"] is True
        status, mine = await _queue(api, t[who])
        assert [r["id"] for r in mine["items"]] == [on_demo]
    # olga moderates other: demo's queue is refused, hers has other's report only
    assert (await _queue(api, t["olga"], association="demo"))[0] == 403
    assert [r["id"] for r in (await _queue(api, t["olga"]))[1]["items"]] == [on_other]
    # a member moderates nothing; anonymous is refused; an unknown association is 404
    assert (await _queue(api, t["mia"]))[0] == 403
    assert (await _queue(api, ""))[0] == 401
    assert (await _queue(api, t["alice"], association="nowhere"))[0] == 404
    # nor can olga act on demo's report: the same answer as a missing one
    assert await _act(api, t["olga"], on_demo, "dismiss") == (await _act(api, t["olga"], 999999, "dismiss"))
    assert (await _act(api, t["olga"], on_demo, "dismiss"))[0] == 404
    # a node admin sees every report
    await _node_admin(node, "zed")
    _, every = await _queue(api, t["zed"])
    assert {r["id"] for r in every["items"]} == {on_demo, on_other}


async def test_the_reporter_is_hidden_from_the_reported_party(node: Node) -> None:
    api, t, _ = await _scene(node)
    mo_iri = node.uris.iri("/users/mo")
    report = await _file(api, t["mia"], mo_iri, "Le modérateur abuse")
    _, seen_by_alice = await _queue(api, t["alice"])
    assert seen_by_alice["items"][0]["reporter"] == node.uris.iri("/users/mia")
    _, seen_by_mo = await _queue(api, t["mo"])
    assert seen_by_mo["items"][0]["id"] == report and seen_by_mo["items"][0]["reporter"] is None
    assert "mia" not in json.dumps(seen_by_mo)


async def test_bad_reports_are_refused_and_nothing_is_stored(node: Node) -> None:
    api, t, posts = await _scene(node)
    async with node.sessions.begin() as session:
        secret = RemoteObject(
            iri=node.uris.object("secret"),
            local=True,
            type="Note",
            kind="post",
            attributed_to_id=(await session.scalar(select(Actor.id).where(Actor.handle == "demo"))),
            visibility="members",
            document={"id": node.uris.object("secret"), "type": "Note"},
            published=utc_now(),
            received_at=utc_now(),
        )
        session.add(secret)
    before = await node.row_counts()
    cases: list[tuple[str | None, Any, int]] = [
        (t["mia"], {"target": "not an iri"}, 400),
        (t["mia"], {"target": posts["demo"], "comment": "x" * 1001}, 400),
        (t["mia"], {"target": posts["demo"], "comment": "a\x00b"}, 400),
        (t["mia"], {"target": posts["demo"], "extra": 1}, 400),
        (t["zed"], {"target": node.uris.object("secret")}, 404),  # members-only: zed cannot read it
        (t["zed"], {"target": "https://nowhere.example/x"}, 404),
        (t["alice_read"], {"target": posts["demo"]}, 403),
        (None, {"target": posts["demo"]}, 401),
    ]
    for token, body, status in cases:
        got, answer, _ = await api.call("POST", "/api/reports", token=token, body=body)
        assert got == status, (body, answer)
    assert await node.row_counts() == before
    for _ in range(10):
        await _file(api, t["mia"], posts["demo"])
    got, answer, _ = await api.call("POST", "/api/reports", token=t["mia"], body={"target": posts["demo"]})
    assert got == 409, answer  # at most 10 an hour


async def test_dismiss_and_remove_are_audited_and_remove_deletes_our_content(node: Node) -> None:
    api, t, posts = await _scene(node)
    first = await _file(api, t["zed"], posts["demo"])
    second = await _file(api, t["zed"], posts["demo"])
    status, done = await _act(api, t["mo"], first, "dismiss", "Rien à redire")
    assert status == 200 and done["state"] == "dismissed" and done["resolution"] == "Rien à redire"
    assert done["resolvedBy"] == node.uris.iri("/users/mo")
    assert (await _act(api, t["mo"], first, "dismiss"))[0] == 409  # closed once
    assert (await _act(api, t["mia"], second, "remove"))[0] == 404  # a member is no moderator
    status, done = await _act(api, t["alice"], second, "remove")
    assert status == 200 and done["state"] == "resolved" and done["removed"] == [posts["demo"]]
    async with node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == posts["demo"]))
        deletes = await session.scalar(
            select(Activity).where(Activity.type == "Delete", Activity.object_iri == posts["demo"])
        )
        audited = (
            await session.execute(
                select(AuditEntry.action, AuditEntry.channel, AuditEntry.target)
                .where(AuditEntry.action.startswith("report."))
                .order_by(AuditEntry.id)
            )
        ).all()
    assert row is not None and row.deleted_at is not None and deletes is not None
    assert [tuple(a) for a in audited] == [
        ("report.dismiss", "api", posts["demo"]),
        ("report.remove", "api", posts["demo"]),
    ]
    _, closed = await _queue(api, t["alice"], state="all")
    assert {r["state"] for r in closed["items"]} == {"dismissed", "resolved"}


async def test_warn_notifies_the_member_and_remove_member_ends_the_membership(node: Node) -> None:
    api, t, _ = await _scene(node)
    mia = node.uris.iri("/users/mia")
    warned = await _file(api, t["zed"], mia, "Insultes")
    status, done = await _act(api, t["mo"], warned, "warn", "Merci de rester courtois.")
    assert status == 200 and done["action"] == "warn" and done["member"] == mia, done
    status, page, _ = await api.call("GET", "/api/notifications", token=t["mia"])
    warnings = [n for n in page["items"] if n["type"] == "warning"]
    assert status == 200 and len(warnings) == 1, page
    assert warnings[0]["message"] == "Merci de rester courtois." and warnings[0]["actor"] == node.uris.iri(
        "/groups/demo"
    )
    assert "zed" not in json.dumps(page)  # never the reporter
    removed = await _file(api, t["zed"], mia, "Encore")
    status, done = await _act(api, t["alice"], removed, "remove-member")
    assert status == 200 and done["member"] == mia
    async with node.sessions() as session:
        left = await session.scalar(
            select(Membership).join(Actor, Actor.id == Membership.member_id).where(Actor.iri == mia)
        )
    assert left is None


async def test_a_forwarded_report_is_the_nodes_flag_and_never_names_the_reporter(node: Node) -> None:
    api, t, posts = await _scene(node)
    await _node_admin(node, "olga")
    report = await _file(api, t["mia"], posts["peer"], "Arnaque")
    # about a peer's note, no association of ours: node admins only
    assert (await _queue(api, t["alice"]))[1]["items"] == []
    assert (await _act(api, t["alice"], report, "forward"))[0] == 404
    status, done = await _act(api, t["olga"], report, "forward")
    assert status == 200 and done["forwarded"] == done["flag"] and done["state"] == "open"
    assert (await _act(api, t["olga"], report, "forward"))[0] == 409
    async with node.sessions() as session:
        flag = await session.scalar(select(Activity).where(Activity.iri == done["flag"]))
        sender = await session.get(Actor, flag.actor_id) if flag is not None else None
        fanout = await session.scalar(
            select(Job).where(Job.kind == "fanout", Job.dedup_key == f"fanout:{flag.id}")
        )  # type: ignore[union-attr]
        stored = await session.scalar(select(Report).where(Report.id == report))
    assert flag is not None and sender is not None and sender.type == "Application"
    assert flag.document["type"] == "Flag" and flag.document["to"] == [PEER_AUTHOR]
    assert flag.document["object"] == [PEER_NOTE, PEER_AUTHOR] and flag.document["content"] == "Arnaque"
    text = json.dumps(flag.document)
    assert "mia" not in text and node.uris.iri("/users/mia") not in text
    assert fanout is not None and stored is not None and stored.forwarded_iri == flag.iri
    # our own content is not forwarded anywhere
    ours = await _file(api, t["zed"], posts["demo"])
    status, problem = await _act(api, t["alice"], ours, "forward")
    assert status == 400 and problem["field"] == "report"
    # and removing the peer's note forgets it here
    status, done = await _act(api, t["olga"], report, "remove")
    assert status == 200
    async with node.sessions() as session:
        row = await session.scalar(select(RemoteObject).where(RemoteObject.iri == PEER_NOTE))
    assert row is not None and row.deleted_at is not None and row.document["type"] == "Tombstone"


# --- the pages ---------------------------------------------------------------------------------------

HTML = {"Accept": "text/html", "Accept-Language": "en"}


async def _page(node: Node, path: str, status: int = 200) -> str:
    path = path.removeprefix(node.uris.origin)
    response = await node.client.get(path, headers=HTML, allow_redirects=False)
    text = await response.text()
    assert response.status == status, (path, response.status, text[:300])
    return text


async def test_a_member_reports_from_the_page_and_a_moderator_acts_from_the_queue(node: Node) -> None:
    from urllib.parse import quote

    from tests.server.test_web_account import _csrf, _sign_in

    _, _, posts = await _scene(node)
    post_page = await _page(node, posts["demo"])
    report_link = f"/report?target={quote(posts['demo'], safe='/')}"
    assert report_link in post_page
    assert f"/report?target={quote(node.uris.iri('/groups/demo'), safe='/')}" in await _page(
        node, "/groups/demo"
    )
    # a visitor is sent to sign in
    assert (await node.client.get(report_link, headers=HTML, allow_redirects=False)).status == 303
    assert (await _sign_in(node.client, "zed")).status == 303
    form = await _page(node, report_link)
    before = await node.row_counts()
    forged = await node.client.post(
        "/report", data={"csrf": "forged", "target": posts["demo"], "comment": "x"}, headers=HTML
    )
    assert forged.status == 403 and await node.row_counts() == before
    too_long = await node.client.post(
        "/report",
        data={"csrf": _csrf(form), "target": posts["demo"], "comment": "x" * 1001},
        headers=HTML,
        allow_redirects=False,
    )
    assert too_long.status == 400 and 'id="report-comment-error"' in await too_long.text()
    assert await node.row_counts() == before
    sent = await node.client.post(
        "/report",
        data={"csrf": _csrf(form), "target": posts["demo"], "comment": "Hors sujet <b>!</b>"},
        headers=HTML,
        allow_redirects=False,
    )
    assert sent.status == 303 and "done=1" in sent.headers["Location"]
    assert "the moderators will read your report" in await _page(node, sent.headers["Location"])
    # zed moderates nothing: the queue and the audit log are refused
    await _page(node, "/moderation", 403)
    await _page(node, "/moderation/audit", 403)
    await _page(node, "/moderation/audit?association=demo", 403)
    # mo moderates demo: the report, its comment escaped, the reporter, and the action form
    assert (await node.client.post("/logout", data={"csrf": _csrf(form)}, headers=HTML)).status in (200, 303)
    node.client.session.cookie_jar.clear()
    assert (await _sign_in(node.client, "mo")).status == 303
    queue_page = await _page(node, "/moderation?association=demo")
    assert "Hors sujet &lt;b&gt;!&lt;/b&gt;" in queue_page and node.uris.iri("/users/zed") in queue_page
    report_id = int(re.search(r'action="/moderation/reports/(\d+)"', queue_page).group(1))  # type: ignore[union-attr]
    await _page(node, "/moderation?association=other", 403)
    forged = await node.client.post(
        f"/moderation/reports/{report_id}", data={"csrf": "x", "action": "dismiss"}, headers=HTML
    )
    assert forged.status == 403
    done = await node.client.post(
        f"/moderation/reports/{report_id}",
        data={
            "csrf": _csrf(queue_page),
            "action": "dismiss",
            "text": "Ça va",
            "back": "/moderation?association=demo",
        },
        headers=HTML,
        allow_redirects=False,
    )
    assert done.status == 303 and done.headers["Location"] == "/moderation?association=demo&done=dismiss"
    assert "The report is dismissed." in await _page(node, done.headers["Location"])
    closed = await _page(node, "/moderation?association=demo&state=dismissed")
    assert "Ça va" in closed and f'action="/moderation/reports/{report_id}"' not in closed
    audit_page = await _page(node, "/moderation/audit?association=demo")
    assert "report.dismiss" in audit_page and "<td>web</td>" in audit_page and "mo@" in audit_page
    await _page(node, "/moderation/audit", 403)  # the node's log: node admins only


# --- two nodes -------------------------------------------------------------------------------------


async def test_a_report_forwarded_by_another_node_lets_the_origin_remove_the_post(
    tmp_path: Path, new_database: Callable[[int], Awaitable[str]]
) -> None:
    """A member of node B reports a post of node A; B's node admin forwards it; A's moderators see
    it (from B's node, never naming B's member), remove the post, and B's copy becomes a tombstone."""
    from server.services.membership import following

    async with (
        running_node(tmp_path / "a", await new_database(0)) as a,
        running_node(tmp_path / "b", await new_database(1)) as b,
    ):
        alpha = await a.create_association("alpha", "Alpha")
        await a.add_member("alice", "alpha", role="admin")
        await b.create_association("beta", "Beta")
        ben = await b.add_member("ben", "beta")
        await b.add_member("bob", "beta", role="admin")
        await _node_admin(b, "bob")
        await following.follow(b.fed, local_name="beta", target_iri=alpha)

        async def followed() -> bool:
            return await follow_state(b, b.uris.iri("/groups/beta"), alpha) == "accepted"

        await wait_until(followed, what="A accepts B's follow")
        on_a, on_b = Api(a), Api(b)
        post = (
            await on_a.create("alpha", "posts", await a.token("alice"), {"content": "<p>Faux remède</p>"})
        )["id"]

        async def held() -> bool:
            return await object_row(b, post) is not None

        await wait_until(held, what="B holds A's post")
        report = await _file(on_b, await b.token("ben"), post, "Dangereux pour les patients")
        status, done = await _act(on_b, await b.token("bob"), report, "forward")
        assert status == 200 and done["forwarded"], done

        alice = await a.token("alice")

        async def received() -> bool:
            return bool((await _queue(on_a, alice, association="alpha"))[1]["items"])

        await wait_until(received, timeout_s=60, what="A receives the forwarded Flag")
        _, page = await _queue(on_a, alice, association="alpha")
        [seen] = page["items"]
        assert seen["targets"] == [post, alpha] or seen["targets"] == [post]
        assert seen["comment"] == "Dangereux pour les patients" and seen["local"] is False
        assert seen["reporter"] is not None and seen["reporter"].startswith(b.uris.origin)
        assert seen["reporter"] != ben
        async with a.sessions() as session:
            documents = [row.document for row in await session.scalars(select(InboxActivity))]
        assert ben not in json.dumps(documents) and "ben" not in json.dumps(seen)
        status, removed = await _act(on_a, alice, seen["id"], "remove", "Retiré")
        assert status == 200 and removed["removed"] == [post]

        async def forgotten() -> bool:
            row = await object_row(b, post)
            return row is not None and row.deleted_at is not None and row.document.get("type") == "Tombstone"

        await wait_until(forgotten, timeout_s=60, what="B applies A's Delete")
        async with b.sessions() as session:
            copy_id = await session.scalar(select(RemoteObject.id).where(RemoteObject.iri == post))
        assert (await b.client.get(f"/read/{copy_id}", headers=HTML)).status in (404, 410)


# --- the command line ------------------------------------------------------------------------------


def test_the_command_line_lists_and_acts_on_reports(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from server.cli import main
    from tests.server.test_cli_publish import _db_url, _node

    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    assert (
        main(
            [
                "publish",
                "resource",
                "--as",
                "demo",
                "--title",
                "Guide",
                "--body-file",
                str(_body(tmp_path)),
                "--config",
                config,
            ]
        )
        == 0
    )
    post = capsys.readouterr().out.strip().splitlines()[-1]

    async def file_reports() -> list[int]:
        engine = create_async_engine(url)
        try:
            async with async_sessionmaker(engine).begin() as session:
                mia = await session.scalar(select(Actor).where(Actor.handle == "mia"))
                demo = await session.scalar(
                    select(Actor).where(Actor.handle == "demo", Actor.type == "Group")
                )
                assert mia is not None and demo is not None
                rows = [
                    Report(
                        activity_iri=f"{mia.iri}/reports/{i}",
                        reporter_id=mia.id,
                        target_iris=[post if i < 3 else mia.iri],
                        content=f"motif {i}",
                        created_at=utc_now(),
                        local=True,
                        group_id=demo.id,
                    )
                    for i in range(4)
                ]
                session.add_all(rows)
                await session.flush()
                return [r.id for r in rows]
        finally:
            await engine.dispose()

    ids = asyncio.run(file_reports())

    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--config", config])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = cli("report", "list")
    assert code == 0 and len(out.splitlines()) == 4 and "motif 0" in out and "/users/mia" in out
    code, out, _ = cli("report", "list", "--as", "mo", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == sorted(ids, reverse=True)
    code, _, err = cli("report", "list", "--as", "mia")
    assert code == 1 and "moderators" in err
    assert cli("report", "dismiss", str(ids[0]), "--as", "mo", "--reason", "rien")[0] == 0
    code, _, err = cli("report", "dismiss", str(ids[0]), "--as", "mo")
    assert code == 1 and "already closed" in err
    code, _, err = cli("report", "forward", str(ids[1]), "--as", "alice")
    assert code == 1 and "nothing to forward" in err
    code, out, _ = cli("report", "remove", str(ids[1]), "--as", "alice")
    assert code == 0 and out.strip() == post
    code, _, err = cli("report", "dismiss", str(ids[2]), "--as", "mia")
    assert code == 1 and "no such report" in err
    until = (utc_now() + timedelta(days=3)).date().isoformat()
    code, _, err = cli("report", "suspend-member", str(ids[1]), "--as", "mo", "--until", until)
    assert code == 1 and "already closed" in err
    code, out, err = cli("report", "suspend-member", str(ids[3]), "--as", "mo", "--until", until)
    assert code == 0 and out.strip().endswith("/users/mia"), err
    code, out, _ = cli("member", "list", "--association", "demo", "--state", "active")
    assert any(line.startswith("@mia@") and "\tsuspended\t" in line for line in out.splitlines())
    code, out, _ = cli("audit", "list", "--action", "report.")
    assert code == 0 and [line.split("\t")[1] for line in out.splitlines()] == ["cli", "cli", "cli"]
    assert "report.remove" in out and "report.dismiss" in out and "report.suspend-member" in out


def _body(tmp_path: Path) -> Path:
    path = tmp_path / "body.txt"
    path.write_text("Un message", encoding="utf-8")
    return path


async def test_block_actions_block_the_reported_peer_and_its_domain_for_node_admins(node: Node) -> None:
    """A report about a peer's content can end in a block of its author or a suspension of its
    domain: node admins only when the report concerns no association, each audited with the
    report's resolution (``moderation/blocks.py`` does the severing)."""
    from server.db.models import ActorBlock, DomainBlock

    api, t, posts = await _scene(node)
    first = await _file(api, t["mia"], posts["peer"], "Spam")
    second = await _file(api, t["mia"], posts["peer"], "Encore du spam")
    # an association's admin does not see a report that concerns no association of theirs
    assert (await _act(api, t["alice"], first, "block-actor"))[0] == 404
    await _node_admin(node, "zed")
    status, done = await _act(api, t["zed"], first, "block-actor", "spammeur")
    assert status == 200 and done["actor"] == PEER_AUTHOR and done["action"] == "block-actor", done
    status, done = await _act(api, t["zed"], second, "block-domain", "domaine de spam")
    assert status == 200 and done["domain"] == "127.0.0.1:9" and done["state"] == "resolved", done
    assert (await _act(api, t["zed"], second, "block-domain"))[0] == 409  # closed already
    async with node.sessions() as session:
        blocked = (await session.scalars(select(ActorBlock.actor_iri))).all()
        domains = (await session.scalars(select(DomainBlock.domain))).all()
        actions = (await session.scalars(select(AuditEntry.action))).all()
    assert blocked == [PEER_AUTHOR] and domains == ["127.0.0.1:9"]
    assert {"report.block-actor", "actor.block", "report.block-domain", "domain.block"} <= set(actions)


async def test_suspend_member_from_a_report_and_failed_actions_said_on_the_queue(node: Node) -> None:
    from tests.server.test_web_account import _csrf, _sign_in

    api, t, _posts = await _scene(node)
    mia = node.uris.iri("/users/mia")
    # through the API: the reported member is suspended until a date, the report resolved
    first = await _file(api, t["zed"], mia, "Insultes")
    until = (utc_now() + timedelta(days=5)).date().isoformat()
    body = {"action": "suspend-member", "text": "Une semaine de pause", "until": until}
    status, done, _ = await api.call("POST", f"/api/reports/{first}/actions", token=t["mo"], body=body)
    assert status == 200
    assert (done["action"], done["member"], done["state"]) == ("suspend-member", mia, "resolved")
    async with node.sessions() as session:
        row = await session.scalar(
            select(Membership).join(Actor, Actor.id == Membership.member_id).where(Actor.iri == mia)
        )
    assert row is not None and row.suspension_reason == "Une semaine de pause"
    assert row.suspended_until is not None and row.suspended_until.date().isoformat() == until
    # on the web: removing the member asks to confirm first, then a handled report is said (409)
    second = await _file(api, t["zed"], mia, "Encore")
    assert (await _sign_in(node.client, "mo")).status == 303
    queue_page = await _page(node, "/moderation?association=demo")
    assert "Suspend the member" in queue_page
    csrf = _csrf(queue_page)
    form = {"csrf": csrf, "action": "remove-member", "text": "Exclu", "back": "/moderation?association=demo"}
    ask = await node.client.post(f"/moderation/reports/{second}", data=form, headers=HTML)
    text = await ask.text()
    assert ask.status == 200 and 'name="confirm"' in text and 'name="confirming" value="yes"' in text
    unticked = await node.client.post(
        f"/moderation/reports/{second}", data={**form, "confirming": "yes"}, headers=HTML
    )
    assert unticked.status == 400 and "Tick the box to confirm" in await unticked.text()
    dismissed = await node.client.post(
        f"/moderation/reports/{second}",
        data={**form, "action": "dismiss"},
        headers=HTML,
        allow_redirects=False,
    )
    assert dismissed.status == 303
    before = await node.row_counts()
    late = await node.client.post(
        f"/moderation/reports/{second}", data={**form, "confirm": "yes"}, headers=HTML
    )
    text = await late.text()
    assert late.status == 409 and "already handled by someone else" in text and 'class="tabs"' in text
    assert await node.row_counts() == before
    # a report on content with no person behind it here: the queue says the action does not apply
    third = await _file(api, t["mia"], node.uris.iri("/groups/demo"), "Groupe")
    wrong = await node.client.post(
        f"/moderation/reports/{third}", data={**form, "action": "warn", "text": "x"}, headers=HTML
    )
    assert wrong.status == 400 and "does not apply" in await wrong.text()
    # confirmed: the member is removed
    fourth = await _file(api, t["zed"], mia, "Toujours")
    done_page = await node.client.post(
        f"/moderation/reports/{fourth}",
        data={**form, "confirm": "yes"},
        headers=HTML,
        allow_redirects=False,
    )
    assert done_page.status == 303, await done_page.text()
    gone = select(Membership.id).join(Actor, Actor.id == Membership.member_id).where(Actor.iri == mia)
    assert await node.scalar(gone) is None
