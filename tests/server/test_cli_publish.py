"""``entraide publish``: association content from the command line, on a node that is not running,
on both engines. The command prints the object's IRI only and queues the delivery."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from server.cli import main
from server.db.models import Actor, AuditEntry, Base, Event, Job, RemoteObject

ORIGIN = "http://127.0.0.1:8080"


def _node(tmp_path: Path, database_url: str) -> str:
    """An initialised node (never started) with demo: admins alice then ann, moderator mo, member mia."""
    data_dir = tmp_path / "data"
    init = ["init", "--data-dir", str(data_dir), "--origin", ORIGIN]
    if database_url.startswith("postgresql"):
        init += ["--database", database_url]
    assert main(init) == 0
    config = str(data_dir / "entraide.toml")
    assert main(["association", "create", "demo", "--name", "Démo", "--config", config]) == 0
    assert main(["association", "create", "empty", "--name", "Sans admin", "--config", config]) == 0
    for username, role in (("alice", "admin"), ("ann", "admin"), ("mo", "moderator"), ("mia", "member")):
        assert (
            main(["member", "add", username, "--association", "demo", "--role", role, "--config", config])
            == 0
        )
    return config


def _db_url(config: str, database_url: str) -> str:
    if database_url.startswith("postgresql"):
        return database_url
    return f"sqlite+aiosqlite:///{Path(config).parent}/entraide.sqlite3"


async def _query(url: str, stmt: Any) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(stmt)).all())
    finally:
        await engine.dispose()


def _counts(url: str) -> dict[str, int]:
    async def count() -> dict[str, int]:
        return {
            t.name: (await _query(url, select(func.count()).select_from(t)))[0][0]
            for t in Base.metadata.sorted_tables
        }

    return asyncio.run(count())


def _publish(
    capsys: pytest.CaptureFixture[str], *args: str, stdin: str | None = None
) -> tuple[int, str, str]:
    capsys.readouterr()
    if stdin is not None:
        saved, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        code = main(["publish", *args])
    finally:
        if stdin is not None:
            sys.stdin = saved
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_publish_alert_from_standard_input_queues_its_delivery(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    valid_until = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat()
    # When an alert is published with its body on standard input (plain text)
    code, out, err = _publish(
        capsys,
        *"alert --as demo --severity critical --category shortage --area-code FR-IDF".split(),
        *("--title", "Pénurie de lévothyroxine", "--area", "Île-de-France", "--valid-until", valid_until),
        *f"--visibility members --body-file - --config {config}".split(),
        stdin="Les pharmacies manquent de Levothyrox <50>.\n\nRenseignez-vous.\n",
    )
    # Then only the object's IRI is printed, and the object, its audit entry and its fan-out are stored
    assert code == 0, err
    iri = out.strip()
    assert out == iri + "\n" and iri.startswith(f"{ORIGIN}/objects/")
    assert "queued" in err
    [(kind, visibility, document)] = asyncio.run(
        _query(
            url,
            select(RemoteObject.kind, RemoteObject.visibility, RemoteObject.document).where(
                RemoteObject.iri == iri
            ),
        )
    )
    assert (kind, visibility) == ("alert", "members")
    assert (document["severity"], document["category"], document["areaCode"]) == (
        "critical",
        "shortage",
        "FR-IDF",
    )
    assert (
        "<p>Les pharmacies manquent de Levothyrox &lt;50&gt;.</p><p>Renseignez-vous.</p>"
        in document["content"]
    )
    [(by,)] = asyncio.run(
        _query(
            url,
            select(Actor.handle)
            .join(AuditEntry, AuditEntry.by_actor_id == Actor.id)
            .where(AuditEntry.action == "alert.create"),
        )
    )
    assert by == "alice"  # the association's first admin
    jobs = asyncio.run(_query(url, select(Job.kind, Job.state)))
    assert ("fanout", "queued") in [tuple(j) for j in jobs]


def test_publish_resource_and_proposal_from_a_file(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    body = tmp_path / "guide.html"
    body.write_text("<h2>Vos droits</h2><p>Le <b>guide</b>.</p>", encoding="utf-8")
    code, out, err = _publish(
        capsys,
        *"resource --as demo --by mo --language fr --tag droits --tag guide".split(),
        *("--title", "Guide des droits", "--summary", "L'essentiel"),
        *("--license", "https://creativecommons.org/licenses/by/4.0/"),
        *("--body-file", str(body), "--config", config),
    )
    assert code == 0, err
    resource = out.strip()
    end = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0).isoformat()
    code, out, err = _publish(
        capsys,
        *("proposal", "--as", "demo", "--title", "Quelles priorités ?", "--option", "Accès aux soins"),
        *("--option", "Pénuries", "--option", "Recherche", "--multiple", "--end-time", end),
        *f"--eligibility associations --config {config}".split(),
    )
    assert code == 0, err
    proposal = out.strip()
    rows = dict(
        (iri, (kind, doc))
        for iri, kind, doc in asyncio.run(
            _query(url, select(RemoteObject.iri, RemoteObject.kind, RemoteObject.document))
        )
    )
    kind, doc = rows[resource]
    assert kind == "resource" and doc["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert {t["name"] for t in doc["tag"]} == {"#droits", "#guide"} and doc["contentMap"].keys() == {"fr"}
    kind, doc = rows[proposal]
    assert kind == "proposal" and [o["name"] for o in doc["anyOf"]] == [
        "Accès aux soins",
        "Pénuries",
        "Recherche",
    ]
    assert doc["eligibility"] == "associations" and "oneOf" not in doc
    audit = asyncio.run(
        _query(url, select(AuditEntry.action, Actor.handle).join(Actor, Actor.id == AuditEntry.by_actor_id))
    )
    assert ("resource.create", "mo") in [tuple(a) for a in audit]


def test_invalid_input_is_one_line_naming_the_option_and_changes_nothing(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    before = _counts(url)
    body = tmp_path / "body.txt"
    body.write_text("Texte", encoding="utf-8")
    alert = "alert --as demo --title T --category other --severity info".split()
    with_body = ["--body-file", str(body), "--config", config]
    proposal = f"proposal --as demo --title Q --option a --config {config}".split()
    resource = "resource --as demo --title R".split()
    for args, expected in [
        ([*alert[:-1], "severe", *with_body], "--severity: severity must be one of: info, warning, critical"),
        ([*alert, "--area-code", "france", *with_body], "--area-code: "),
        ([*alert, "--valid-until", "demain", *with_body], "--valid-until: "),
        ([*alert, "--supersedes", f"{ORIGIN}/objects/{'0' * 32}", *with_body], "--supersedes: "),
        ([*alert, "--config", config], "--body-file: content is required"),
        ([*alert[:3], *alert[5:], *with_body], "--title: name is required"),
        (proposal, "--option: "),
        ([*proposal, "--option", "b", "--eligibility", "tous"], "--eligibility: "),
        ([*resource, "--license", "cc-by", *with_body], "--license: "),
        ([*resource, "--visibility", "secret", *with_body], "--visibility: "),
        ([*alert[:2], "nowhere", *alert[3:], *with_body], "--as: no association 'nowhere'"),
        ([*alert, "--by", "mia", *with_body], "--by: mia is not an admin or moderator of demo"),
        ([*alert, "--by", "nobody", *with_body], "--by: nobody is not an admin or moderator of demo"),
        (
            [*alert, "--body-file", str(tmp_path / "missing.txt"), "--config", config],
            "--body-file: cannot read",
        ),
    ]:
        code, out, err = _publish(capsys, *args)
        assert code == 1 and out == "", (args, out, err)
        assert err.count("\n") == 1 and err.startswith(f"entraide: error: {expected}"), (args, err)
    assert _counts(url) == before


def test_an_association_without_admins_is_published_as_by_the_operator(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh node (the README's demo) has an association and no admin yet: the operator, who
    holds the database, publishes as the association itself, and the audit log says so."""
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    body = tmp_path / "body.txt"
    body.write_text("Texte", encoding="utf-8")
    code, out, err = _publish(
        capsys,
        *"alert --as empty --title T --category other --severity info".split(),
        *("--body-file", str(body), "--config", config),
    )
    assert code == 0, err
    assert out.strip().startswith(ORIGIN)
    audit = asyncio.run(
        _query(url, select(AuditEntry.action, Actor.handle).join(Actor, Actor.id == AuditEntry.by_actor_id))
    )
    assert ("alert.create", "empty") in [tuple(a) for a in audit]


def test_publish_help_and_standard_input_in_a_real_process(tmp_path: Path, database_url: str) -> None:
    config = _node(tmp_path, database_url)
    env = {**os.environ, "ENTRAIDE_CONFIG": config}
    for kind in ("alert", "resource", "proposal"):
        shown = subprocess.run(
            [sys.executable, "-m", "server", "publish", kind, "--help"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert shown.returncode == 0 and "--body-file" in shown.stdout and "--as SLUG" in shown.stdout
    result = subprocess.run(
        [sys.executable, "-m", "server", *"publish resource --as demo --title Fiche --body-file -".split()],
        input="<p>Une fiche.</p>",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{ORIGIN}/objects/") and result.stdout.count("\n") == 1


def test_publish_event_and_its_refusals_name_the_option(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _node(tmp_path, database_url)
    url = _db_url(config, database_url)
    start = (datetime.now(UTC) + timedelta(days=20)).replace(microsecond=0)
    event = [
        *"event --as demo --title Colloque --join-mode restricted --capacity 30".split(),
        *("--start-time", start.isoformat(), "--end-time", (start + timedelta(hours=3)).isoformat()),
        *("--timezone", "Europe/Paris", "--place", "Salle des fêtes", "--locality", "Nantes"),
        *("--config", config),
    ]
    before = _counts(url)
    for change, expected in [
        (["--timezone", "Europe/Nowhere"], "--timezone: "),
        (["--capacity", "-2"], "--capacity: "),
        (["--end-time", start.isoformat()], "--end-time: endTime must be after startTime"),
    ]:
        code, out, err = _publish(capsys, *event, *change)
        assert code == 1 and out == "" and err.startswith(f"entraide: error: {expected}"), (change, err)
    assert _counts(url) == before
    code, out, err = _publish(capsys, *event)
    assert code == 0, err
    [(kind, document)] = asyncio.run(
        _query(url, select(RemoteObject.kind, RemoteObject.document).where(RemoteObject.iri == out.strip()))
    )
    assert (
        kind == "event" and document["joinMode"] == "restricted" and document["maximumAttendeeCapacity"] == 30
    )
    assert document["location"]["address"]["addressLocality"] == "Nantes"
    # content edit: refusals name the option; --end-time '' removes the end (the row, the document)
    iri = out.strip()
    edit = ["edit", iri, "--config", config]

    def _content(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["content", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    before = _counts(url)
    for change, expected in [
        (["--end-time", (start - timedelta(hours=1)).isoformat()], "--end-time: endTime must be after"),
        (["--capacity", "-1"], "--capacity: "),
        (["--timezone", "Mars/Olympus"], "--timezone: "),
    ]:
        code, out, err = _content(*edit, *change)
        assert code == 1 and out == "" and err.startswith(f"entraide: error: {expected}"), (change, err)
    assert _counts(url) == before
    code, out, err = _content(*edit, "--end-time", "", "--capacity", "40")
    assert code == 0 and out.startswith(f"{ORIGIN}/"), err
    [(document,)] = asyncio.run(_query(url, select(RemoteObject.document).where(RemoteObject.iri == iri)))
    assert "endTime" not in document and document["maximumAttendeeCapacity"] == 40
    row_of_iri = select(RemoteObject.id).where(RemoteObject.iri == iri).scalar_subquery()
    [(end_at, sequence)] = asyncio.run(
        _query(url, select(Event.end_at, Event.sequence).where(Event.object_id == row_of_iri))
    )
    assert end_at is None and sequence == 1
    # the place: the options given replace it (the same options as `publish event`); '' removes it
    place = ["--place-name", "Grande salle", "--street", "1 rue de la Paix", "--postal-code", "35000"]
    code, out, err = _content(*edit, *place, "--locality", "Rennes", "--country", "France")
    assert code == 0, err
    [(document,)] = asyncio.run(_query(url, select(RemoteObject.document).where(RemoteObject.iri == iri)))
    assert document["location"]["name"] == "Grande salle"
    assert document["location"]["address"]["streetAddress"] == "1 rue de la Paix"
    assert document["location"]["address"]["addressCountry"] == "France"
    where = select(Event.location_name, Event.locality, Event.sequence).where(Event.object_id == row_of_iri)
    assert asyncio.run(_query(url, where)) == [("Grande salle", "Rennes", 2)]
    code, out, err = _content(*edit, "--place-name", "")
    assert code == 0, err
    [(document,)] = asyncio.run(_query(url, select(RemoteObject.document).where(RemoteObject.iri == iri)))
    assert "location" not in document
    assert asyncio.run(_query(url, where)) == [(None, None, 3)]
