"""``entraide content|member|association|token|audit``: running an association from the command line
(issue 17), on a node that is not running (changes are queued), on both engines. Every action is
in the audit log with the channel ``cli``; refusals are one clear line, exit code 1, nothing changed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.cli import build_parser, main
from server.db.models import Activity, Actor, AuditEntry, Membership, RemoteObject, Token
from tests.server.test_cli_members import PEER, _pending_join
from tests.server.test_cli_publish import ORIGIN, _counts, _db_url, _node, _query


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _audit(url: str) -> list[tuple[str, str, str | None, str | None]]:
    """(action, channel, by handle, target) of every entry, oldest first."""
    rows = asyncio.run(
        _query(
            url,
            select(AuditEntry.action, AuditEntry.channel, Actor.handle, AuditEntry.target)
            .outerjoin(Actor, Actor.id == AuditEntry.by_actor_id)
            .order_by(AuditEntry.id),
        )
    )
    return [tuple(r) for r in rows]


def _document(url: str, iri: str) -> dict[str, Any]:
    [(document,)] = asyncio.run(_query(url, select(RemoteObject.document).where(RemoteObject.iri == iri)))
    return dict(document)


def _publish(capsys: pytest.CaptureFixture[str], config: str, kind: str, *args: str) -> str:
    code, out, err = _cli(capsys, "publish", kind, "--as", "demo", *args, "--config", config)
    assert code == 0, err
    return out.strip()


NEW_COMMANDS = [
    ("content", "list"),
    ("content", "edit"),
    ("content", "retract"),
    ("content", "close"),
    ("content", "delete"),
    ("member", "list"),
    ("member", "role"),
    ("association", "list"),
    ("token", "list"),
    ("token", "revoke"),
    ("audit", "list"),
]


def test_every_new_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser is not None
    for path in NEW_COMMANDS:
        with pytest.raises(SystemExit) as exited:
            main([*path, "--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: entraide {' '.join(path)}" in out and "--config" in out
    # bad usage is exit code 2 with the usage line
    with pytest.raises(SystemExit) as exited:
        main(["content", "retract"])
    assert exited.value.code == 2 and "usage: entraide content retract" in capsys.readouterr().err


def test_alerts_are_listed_edited_retracted_superseded_and_deleted(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    until = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    alert_args = ["--severity", "warning", "--category", "shortage", "--title", "Pénurie", "--body-file"]
    body = tmp_path / "body.txt"
    body.write_text("Rupture.", encoding="utf-8")
    first = _publish(capsys, config, "alert", *alert_args, str(body), "--valid-until", until.isoformat())
    private = _publish(
        capsys, config, "alert", *alert_args, str(body), "--visibility", "members", "--by", "mo"
    )
    # content list: every visibility for the operator, newest first, with the state
    code, out, err = _cli(capsys, "content", "list", "--as", "demo", "--config", config)
    assert code == 0, err
    lines = [line.split("\t") for line in out.splitlines()]
    assert [tuple(line[:4]) for line in lines] == [
        (private, "alert", "active", "members"),
        (first, "alert", "active", "public"),
    ]
    assert lines[0][5] == "Pénurie"
    # extend the validity: an Update is queued, the document says the new end, audited as mo's
    later = until + timedelta(days=5)
    code, out, err = _cli(
        capsys, "content", "edit", first, "--valid-until", later.isoformat(), "--by", "mo", "--config", config
    )
    assert code == 0, err
    update_iri = out.strip()
    assert datetime.fromisoformat(_document(url, first)["validUntil"]) == later
    [(kind,)] = asyncio.run(_query(url, select(Activity.type).where(Activity.iri == update_iri)))
    assert kind == "Update"
    # refusals: one line, exit 1, nothing changed
    before = _counts(url)
    for args, message in [
        (["edit", first, "--summary", "x"], "--summary: summary does not apply to a alert"),
        (["edit", first], "nothing to change"),
        (["edit", first, "--title", "x", "--by", "mia"], "--by: mia is not an admin or moderator of demo"),
        (["edit", first, "--valid-until", "tomorrow"], "--valid-until:"),
        (["close", first], "only a proposal or a poll is closed"),
        (["retract", f"{ORIGIN}/objects/{'0' * 32}"], "no such object on this node"),
    ]:
        code, out, err = _cli(capsys, "content", *args, "--config", config)
        assert (code, out) == (1, ""), (args, err)
        assert message in err and err.count("\n") == 1, (args, err)
    assert _counts(url) == before
    # retract: the alert says so, retracting again is refused
    code, _, err = _cli(capsys, "content", "retract", first, "--config", config)
    assert code == 0, err
    assert _document(url, first)["alertStatus"] == "retracted"
    code, _, err = _cli(capsys, "content", "retract", first, "--config", config)
    assert code == 1 and "already retracted" in err
    # supersede: the successor links the old one, which links it back
    successor = _publish(capsys, config, "alert", *alert_args, str(body), "--supersedes", private)
    old = _document(url, private)
    assert (old["alertStatus"], old["supersededBy"]) == ("superseded", successor)
    # delete: a Tombstone and a Delete activity; listed only with --deleted
    code, out, err = _cli(capsys, "content", "delete", successor, "--config", config)
    assert code == 0, err
    assert _document(url, successor)["type"] == "Tombstone"
    [(document,)] = asyncio.run(_query(url, select(Activity.document).where(Activity.iri == out.strip())))
    assert document["type"] == "Delete" and document["object"]["type"] == "Tombstone"
    code, out, _ = _cli(capsys, "content", "list", "--as", "demo", "--json", "--config", config)
    states = {item["id"]: item["status"] for item in json.loads(out)}
    assert states == {first: "retracted", private: "superseded"}
    code, out, _ = _cli(capsys, "content", "list", "--as", "demo", "--deleted", "--json", "--config", config)
    assert {item["id"]: item["status"] for item in json.loads(out)}[successor] == "deleted"
    code, _, err = _cli(capsys, "content", "delete", successor, "--config", config)
    assert code == 1 and "no such object" in err
    # every action audited, from the command line, by whom, on what
    entries = [e for e in _audit(url) if e[0].startswith("alert.")]
    assert entries == [
        ("alert.create", "cli", "alice", first),
        ("alert.create", "cli", "mo", private),
        ("alert.update", "cli", "mo", first),
        ("alert.retract", "cli", "alice", first),
        ("alert.create", "cli", "alice", successor),
        ("alert.supersede", "cli", "alice", private),
        ("alert.delete", "cli", "alice", successor),
    ]


def test_resource_revision_with_a_change_note_and_a_proposal_closed_early(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    body = tmp_path / "guide.html"
    body.write_text("<p>Version 1</p>", encoding="utf-8")
    resource = _publish(capsys, config, "resource", "--title", "Guide", "--body-file", str(body))
    body.write_text("<p>Version 2</p>", encoding="utf-8")
    code, out, err = _cli(
        capsys,
        "content",
        "edit",
        resource,
        "--body-file",
        str(body),
        "--note",
        "Ajout <des> droits",
        "--config",
        config,
    )
    assert code == 0, err
    assert "Version 2" in _document(url, resource)["content"]
    [(update,)] = asyncio.run(_query(url, select(Activity.document).where(Activity.iri == out.strip())))
    assert update["summary"] == "<p>Ajout &lt;des&gt; droits</p>"  # plain text, escaped
    [(detail,)] = asyncio.run(
        _query(url, select(AuditEntry.detail).where(AuditEntry.action == "resource.update"))
    )
    assert detail["note"] == "Ajout <des> droits" and detail["changed"] == ["content"]
    code, _, err = _cli(capsys, "content", "edit", resource, "--severity", "info", "--config", config)
    assert code == 1 and "--severity: severity does not apply to a resource" in err
    # a proposal closed before its end: closed, its Update queued, no second close
    proposal = _publish(
        capsys, config, "proposal", "--title", "Charte ?", "--option", "Oui", "--option", "Non"
    )
    code, _, err = _cli(capsys, "content", "close", proposal, "--by", "mo", "--config", config)
    assert code == 0, err
    document = _document(url, proposal)
    assert document["proposalStatus"] == "closed" and document["closed"]
    code, _, err = _cli(capsys, "content", "close", proposal, "--config", config)
    assert code == 1 and "already closed" in err
    assert ("proposal.close", "cli", "mo", proposal) in _audit(url)
    code, out, _ = _cli(capsys, "content", "list", "--as", "demo", "--kind", "proposal", "--config", config)
    assert out.split("\t")[:3] == [proposal, "proposal", "closed"]


def test_members_by_username_or_handle_requests_refused_with_a_reason_and_roles(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    asyncio.run(_pending_join(url, config))
    code, out, err = _cli(capsys, "member", "list", "--association", "demo", "--config", config)
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("@alice@127.0.0.1:8080", "admin", "active"),
        ("@ann@127.0.0.1:8080", "admin", "active"),
        ("@mia@127.0.0.1:8080", "member", "active"),
        ("@mo@127.0.0.1:8080", "moderator", "active"),
        ("@zoe@peer.example", "member", "pending"),
    ]
    code, out, _ = _cli(
        capsys, "member", "list", "--association", "demo", "--state", "pending", "--json", "--config", config
    )
    assert [m["member"] for m in json.loads(out)] == [PEER]
    # refused with a reason, by handle: the Reject carries it, the audit log keeps it
    code, _, err = _cli(
        capsys,
        "member",
        "refuse",
        "@zoe@peer.example",
        "--association",
        "demo",
        "--reason",
        "Réservé aux <adhérents>",
        "--config",
        config,
    )
    assert code == 0, err
    [(reject,)] = asyncio.run(_query(url, select(Activity.document).where(Activity.type == "Reject")))
    assert reject["content"] == "<p>Réservé aux &lt;adhérents&gt;</p>" and reject["to"] == [PEER]
    [(detail,)] = asyncio.run(
        _query(url, select(AuditEntry.detail).where(AuditEntry.action == "member.refuse"))
    )
    assert detail["reason"] == "Réservé aux <adhérents>"
    # roles: by username; only admins decide; the last admin keeps the role
    code, out, err = _cli(
        capsys, "member", "role", "mia", "--association", "demo", "--role", "moderator", "--config", config
    )
    assert (code, out) == (0, "role = moderator\n"), err
    code, _, err = _cli(
        capsys,
        "member",
        "role",
        "mia",
        "--association",
        "demo",
        "--role",
        "admin",
        "--by",
        "mo",
        "--config",
        config,
    )
    assert code == 1 and "--by: mo is not an admin of demo" in err
    code, _, err = _cli(
        capsys, "member", "role", "ann", "--association", "demo", "--role", "member", "--config", config
    )
    assert code == 0, err
    before = _counts(url)
    code, _, err = _cli(
        capsys, "member", "role", "alice", "--association", "demo", "--role", "member", "--config", config
    )
    assert code == 1 and "the last admin keeps the role" in err
    assert _counts(url) == before
    # remove by username (it once answered "not a member": it wanted an IRI), by handle, unknown ones
    code, _, err = _cli(capsys, "member", "remove", "mia", "--association", "demo", "--config", config)
    assert code == 0, err
    code, _, err = _cli(
        capsys, "member", "remove", "@ann@127.0.0.1:8080", "--association", "demo", "--config", config
    )
    assert code == 0, err
    for who, message in [
        ("carol", "no person 'carol' on this node"),
        ("@zoe@peer.example", "not a member"),
        ("@x@", "neither a username"),
    ]:
        code, _, err = _cli(capsys, "member", "remove", who, "--association", "demo", "--config", config)
        assert code == 1 and message in err, (who, err)
    members = asyncio.run(
        _query(
            url,
            select(Actor.handle, Membership.role)
            .join(Membership, Membership.member_id == Actor.id)
            .where(Membership.state == "active")
            .order_by(Actor.handle),
        )
    )
    assert [tuple(m) for m in members] == [("alice", "admin"), ("mo", "moderator")]
    entries = [(a, c, b) for a, c, b, _ in _audit(url) if a.startswith("member.") and b is not None]
    assert entries == [
        ("member.refuse", "cli", "alice"),
        ("member.role", "cli", "alice"),
        ("member.role", "cli", "alice"),
        ("member.remove", "cli", "alice"),
        ("member.remove", "cli", "alice"),
    ]


def test_associations_are_listed_and_edited_with_an_update_to_followers(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    code, out, err = _cli(capsys, "association", "list", "--config", config)
    assert code == 0, err
    assert [line.split("\t")[:4] for line in out.splitlines()] == [
        ["demo", "Démo", "4 members", "0 pending"],
        ["empty", "Sans admin", "0 members", "0 pending"],
    ]
    code, out, err = _cli(
        capsys,
        "association",
        "set",
        "demo",
        "--name",
        "Démo 2",
        "--summary",
        "Entraide",
        "--language",
        "fr",
        "--join-policy",
        "open",
        "--by",
        "alice",
        "--config",
        config,
    )
    assert code == 0, err
    assert out.splitlines()[3:] == ["name = Démo 2", "summary = Entraide", "language = fr"]
    [(update,)] = asyncio.run(_query(url, select(Activity.document).where(Activity.type == "Update")))
    assert update["object"]["name"] == "Démo 2" and update["object"]["type"] == "Group"
    assert update["cc"] == [f"{ORIGIN}/groups/demo/followers"]
    [(by, detail, channel)] = asyncio.run(
        _query(
            url,
            select(Actor.handle, AuditEntry.detail, AuditEntry.channel)
            .join(Actor, Actor.id == AuditEntry.by_actor_id)
            .where(AuditEntry.action == "association.configure"),
        )
    )
    assert (by, channel) == ("alice", "cli")
    assert detail["before"] == {"name": "Démo", "summary": "", "language": None, "join_policy": "approval"}
    # the default language applies to content published without one
    body = tmp_path / "b.txt"
    body.write_text("Texte", encoding="utf-8")
    post = _publish(capsys, config, "resource", "--title", "T", "--body-file", str(body))
    assert list(_document(url, post)["contentMap"]) == ["fr"]
    # only the language changes: no Update (it is not in the profile); bad values change nothing
    before = _counts(url)
    for args, message in [
        (["--language", "français!"], "--language: language must be a BCP 47 tag"),
        (["--name", " "], "--name: name must not be empty"),
        (["--name", "x", "--by", "mo"], "--by: mo is not an admin of demo"),
    ]:
        code, _, err = _cli(capsys, "association", "set", "demo", *args, "--config", config)
        assert code == 1 and message in err, (args, err)
    assert _counts(url) == before
    code, _, _ = _cli(capsys, "association", "set", "demo", "--language", "", "--config", config)
    assert code == 0
    assert len(asyncio.run(_query(url, select(Activity.id).where(Activity.type == "Update")))) == 1


def test_tokens_are_listed_without_secrets_revoked_and_audited(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    code, secret, _ = _cli(capsys, "token", "create", "mia", "--label", "script", "--config", config)
    assert code == 0
    _cli(capsys, "token", "create", "mia", "--scope", "read", "--config", config)
    code, out, err = _cli(capsys, "token", "list", "mia", "--config", config)
    assert code == 0, err
    assert secret.strip() not in out and "ent_" not in out
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(r[1], r[2], r[5]) for r in rows] == [("write", "active", "script"), ("read", "active", "")]
    first = rows[0][0]
    code, out, err = _cli(capsys, "token", "revoke", "mia", first, "--config", config)
    assert (code, out) == (0, f"{first}\trevoked\n"), err
    code, out, _ = _cli(capsys, "token", "list", "mia", "--json", "--config", config)
    assert [t["id"] for t in json.loads(out)] == [int(rows[1][0])]
    code, out, _ = _cli(capsys, "token", "list", "mia", "--all", "--json", "--config", config)
    assert json.loads(out)[0]["revoked"] is not None and "ent_" not in out
    [(revoked,)] = asyncio.run(_query(url, select(Token.revoked_at).where(Token.id == int(first))))
    assert revoked is not None
    # another account's token, an unknown one, an unknown account: refused
    for args, message in [
        (["revoke", "alice", first], f"alice has no token {first}"),
        (["revoke", "mia", "999999"], "mia has no token 999999"),
        (["list", "nobody"], "no local account 'nobody'"),
    ]:
        code, _, err = _cli(capsys, "token", *args, "--config", config)
        assert code == 1 and message in err, (args, err)
    actions = [(a, c) for a, c, _, _ in _audit(url) if a.startswith("token.")]
    assert actions == [("token.create", "cli"), ("token.create", "cli"), ("token.revoke", "cli")]
    [(detail,)] = asyncio.run(
        _query(url, select(AuditEntry.detail).where(AuditEntry.action == "token.revoke"))
    )
    assert detail == {"token": int(first), "scope": "write", "label": "script"}  # never the secret


def test_audit_list_filters(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = _node(tmp_path, database_url)
    body = tmp_path / "b.txt"
    body.write_text("Texte", encoding="utf-8")
    alert = _publish(
        capsys,
        config,
        "alert",
        "--severity",
        "info",
        "--category",
        "other",
        "--title",
        "A",
        "--body-file",
        str(body),
        "--by",
        "mo",
    )
    _cli(capsys, "content", "retract", alert, "--by", "mo", "--config", config)
    _cli(capsys, "member", "remove", "mia", "--association", "demo", "--config", config)

    def listed(*args: str) -> list[dict[str, Any]]:
        code, out, err = _cli(capsys, "audit", "list", *args, "--json", "--config", config)
        assert code == 0, err
        return list(json.loads(out))

    everything = listed()
    assert everything[0]["action"] == "member.remove" and everything[0]["channel"] == "cli"
    assert [e["action"] for e in listed("--by", "mo")] == ["alert.retract", "alert.create"]
    assert [e["action"] for e in listed("--by", "@mo@127.0.0.1:8080", "--action", "alert.retract")] == [
        "alert.retract"
    ]
    assert {e["action"] for e in listed("--action", "member.")} == {"member.add", "member.remove"}
    assert [e["action"] for e in listed("--target", alert)] == ["alert.retract", "alert.create"]
    assert listed("--association", "empty") == [e for e in everything if e["associationHandle"] == "empty"]
    assert listed("--channel", "web") == []
    assert len(listed("--limit", "2")) == 2
    assert listed("--since", (datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
    assert len(listed("--until", (datetime.now(UTC) + timedelta(hours=1)).isoformat())) == len(everything)
    code, out, _ = _cli(capsys, "audit", "list", "--action", "alert.", "--config", config)
    assert out.splitlines()[0].split("\t")[1:6] == [
        "cli",
        "demo",
        "mo@127.0.0.1:8080",
        "alert.retract",
        alert,
    ]
    for args, message in [
        (["--since", "yesterday"], "--since: 'yesterday' is not an ISO 8601 date"),
        (["--since", "2026-01-01T00:00:00"], "--since: give a time zone"),
        (["--by", "nobody"], "--by: no person 'nobody' on this node"),
        (["--association", "nowhere"], "--association: no association 'nowhere'"),
        (["--action", "a b"], "--action: action must be an action name"),
    ]:
        code, _, err = _cli(capsys, "audit", "list", *args, "--config", config)
        assert code == 1 and message in err, (args, err)
