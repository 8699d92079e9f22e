"""``entraide member pending|approve|refuse|remove``: answering requests to join from the command
line (on a node that is not running; the answers are queued), on both engines."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from server.cli import main
from server.db.models import Activity, Actor, AuditEntry, Membership
from tests.server.test_cli_publish import _db_url, _node, _query

PEER = "https://peer.example/users/zoe"


async def _pending_join(url: str, config: str) -> None:
    """A remote person asked to join demo (what the inbox stores for a Join)."""
    engine = create_async_engine(url)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            group = (
                await conn.execute(select(Actor.id).where(Actor.handle == "demo", Actor.type == "Group"))
            ).scalar_one()
            result = await conn.execute(
                Actor.__table__.insert().values(
                    iri=PEER,
                    local=False,
                    type="Person",
                    handle="zoe",
                    host="peer.example",
                    name="Zoé",
                    summary="",
                    inbox_iri=f"{PEER}/inbox",
                    manually_approves_followers=False,
                    discoverable=True,
                    members_visibility="public",
                    join_policy="approval",
                    replies_policy="anyone",
                    created_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(
                Membership.__table__.insert().values(
                    group_id=group,
                    member_id=result.inserted_primary_key[0],
                    role="member",
                    state="pending",
                    join_iri="https://peer.example/activities/join-1",
                    created_at=now,
                    updated_at=now,
                )
            )
    finally:
        await engine.dispose()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["member", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_pending_requests_are_listed_approved_by_a_moderator_and_removed(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    asyncio.run(_pending_join(url, config))
    assert _run(capsys, "pending", "--association", "demo", "--config", config)[:2] == (0, f"{PEER}\n")
    # a plain member may not decide
    code, out, err = _run(capsys, "approve", PEER, "--association", "demo", "--by", "mia", "--config", config)
    assert code == 1 and out == "" and "--by: mia is not an admin or moderator of demo" in err
    # the moderator approves: active, and an Accept{Join} is queued for the peer
    code, _, err = _run(capsys, "approve", PEER, "--association", "demo", "--by", "mo", "--config", config)
    assert code == 0, err
    states: list[Any] = asyncio.run(
        _query(
            url,
            select(Membership.state).join(Actor, Actor.id == Membership.member_id).where(Actor.iri == PEER),
        )
    )
    assert [s[0] for s in states] == ["active"]
    accepted = asyncio.run(_query(url, select(Activity.document).where(Activity.type == "Accept")))
    assert accepted[0][0]["object"]["id"] == "https://peer.example/activities/join-1"
    assert _run(capsys, "pending", "--association", "demo", "--config", config)[1] == ""
    # approving again: nothing pending
    code, _, err = _run(capsys, "approve", PEER, "--association", "demo", "--config", config)
    assert code == 1 and "no pending request" in err
    # removed by the first admin: gone, and a Remove is queued
    code, _, err = _run(capsys, "remove", PEER, "--association", "demo", "--config", config)
    assert code == 0, err
    assert (
        asyncio.run(
            _query(
                url,
                select(Membership.id).join(Actor, Actor.id == Membership.member_id).where(Actor.iri == PEER),
            )
        )
        == []
    )
    assert asyncio.run(_query(url, select(Activity.type).where(Activity.type == "Remove")))
    actions = [a[0] for a in asyncio.run(_query(url, select(AuditEntry.action)))]
    assert "member.approve" in actions and "member.remove" in actions


def test_every_member_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for verb in ("pending", "approve", "refuse", "remove", "suspend", "unsuspend"):
        with pytest.raises(SystemExit) as exited:
            main(["member", verb, "--help"])
        assert exited.value.code == 0
        assert "--association" in capsys.readouterr().out


def test_association_settings_are_shown_changed_and_audited(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)

    def association(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["association", "set", *args, "--config", config])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    # the defaults of a patient association
    code, out, _ = association("demo")
    assert code == 0
    assert out.splitlines()[:3] == [
        "join_policy = approval",
        "replies_policy = members",
        "members_visibility = members",
    ]
    # changed, printed and audited
    code, out, err = association(
        "demo", "--join-policy", "open", "--replies", "anyone", "--members-list", "public"
    )
    assert code == 0, err
    assert out.splitlines()[:3] == [
        "join_policy = open",
        "replies_policy = anyone",
        "members_visibility = public",
    ]
    [(detail,)] = asyncio.run(
        _query(url, select(AuditEntry.detail).where(AuditEntry.action == "association.configure"))
    )
    assert detail["after"] == {
        "join_policy": "open",
        "replies_policy": "anyone",
        "members_visibility": "public",
    }
    # bad input: a clear error, nothing changed
    with pytest.raises(SystemExit) as refused:
        association("demo", "--join-policy", "sometimes")
    assert refused.value.code == 2 and "invalid choice" in capsys.readouterr().err
    code, _, err = association("nobody", "--replies", "members")
    assert code == 1 and "no association 'nobody'" in err
    assert association("demo")[1].splitlines()[0] == "join_policy = open"


def test_members_are_suspended_and_lifted_from_the_command_line(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    until = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    # the moderator may not suspend an admin; bad dates are said with their option
    code, _, err = _run(capsys, "suspend", "ann", "--association", "demo", "--by", "mo", "--config", config)
    assert code == 1 and "only an admin suspends an admin" in err
    code, _, err = _run(
        capsys, "suspend", "mia", "--association", "demo", "--until", "hier", "--config", config
    )
    assert code == 1 and "--until:" in err
    # the first admin suspends ann (an admin) with an end and a reason: listed as suspended
    code, out, err = _run(
        capsys, "suspend", "ann", "--association", "demo", "--until", until, "--reason", "Pause",
        "--config", config,
    )  # fmt: skip
    assert code == 0 and out.startswith(f"suspended until {until}"), err
    code, out, _ = _run(capsys, "list", "--association", "demo", "--json", "--config", config)
    states = {item["handle"].split("@")[1]: item["state"] for item in json.loads(out)}
    assert states["ann"] == "suspended" and states["mia"] == "active"
    # a suspended admin publishes nothing as the association, from the command line either
    body = tmp_path / "guide.txt"
    body.write_text("Bonjour", encoding="utf-8")
    capsys.readouterr()
    publish = ["publish", "resource", "--as", "demo", "--by", "ann", "--title", "Guide"]
    code = main([*publish, "--body-file", str(body), "--config", config])
    assert code == 1 and "suspended in this association" in capsys.readouterr().err
    # lifted, once
    lifted = _run(capsys, "unsuspend", "ann", "--association", "demo", "--config", config)
    assert lifted[:2] == (0, "active\n")
    code, _, err = _run(capsys, "unsuspend", "ann", "--association", "demo", "--config", config)
    assert code == 1 and "not suspended" in err
    actions = [(a[0], a[1]) for a in asyncio.run(_query(url, select(AuditEntry.action, AuditEntry.channel)))]
    assert ("member.suspend", "cli") in actions and ("member.unsuspend", "cli") in actions
