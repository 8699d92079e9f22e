"""Every recorded peer payload is classified, byte-faithful, and accepted by the lenient schemas.

When you add a payload under ``tests/fixtures/payloads/<software>/``: say where it came from in
that folder's README.md, add it to ``KIND`` below (or to ``EXPECTED_INVALID`` with the reason),
and add its line to ``tests/fixtures/payloads/SHA256SUMS`` (``sha256sum <software>/<file>``).
"""

from __future__ import annotations

import hashlib

import pytest

from federation import jsonld, validation
from federation.errors import InvalidDocument
from tests.schemas.helpers import PAYLOADS, load_json

# payload (relative to tests/fixtures/payloads) -> lenient schema it must satisfy
KIND: dict[str, str] = {
    "fedify/actor.json": "activitystreams/actor",
    "fedify/create_note.json": "activitystreams/activity",
    "lemmy/accept_follow.json": "activitystreams/activity",
    "lemmy/announce_create_page.json": "activitystreams/activity",
    "lemmy/create_page.json": "activitystreams/activity",
    "lemmy/follow.json": "activitystreams/activity",
    "lemmy/group.json": "activitystreams/actor",
    "lemmy/group_outbox.json": "activitystreams/collection",
    "lemmy/person.json": "activitystreams/actor",
    "mastodon/actor.json": "activitystreams/actor",
    "mastodon/create_note.json": "activitystreams/activity",
    "mastodon/delete_note.json": "activitystreams/activity",
    "mastodon/flag.json": "activitystreams/activity",
    "mastodon/follow.json": "activitystreams/activity",
    "mastodon/question.json": "activitystreams/object",
    "mastodon/undo_follow.json": "activitystreams/activity",
    "mastodon/vote_create.json": "activitystreams/activity",
    "mobilizon/group.json": "activitystreams/actor",
    "mobilizon/accept_join.json": "activitystreams/activity",
    "mobilizon/create_event.json": "activitystreams/activity",
    "mobilizon/join.json": "activitystreams/activity",
    "mobilizon/join_event.json": "activitystreams/activity",
    "mobilizon/leave_event.json": "activitystreams/activity",
    "mobilizon/members_collection.json": "activitystreams/collection",
    "mobilizon/person.json": "activitystreams/actor",
    "mobilizon/update_event_cancelled.json": "activitystreams/activity",
}

# payload -> (schema, reason) for real payloads we knowingly refuse. Empty today.
EXPECTED_INVALID: dict[str, tuple[str, str]] = {}

SOFTWARE = ("mastodon", "lemmy", "mobilizon", "fedify")


def _payload_files() -> list[str]:
    return sorted(path.relative_to(PAYLOADS).as_posix() for path in PAYLOADS.glob("*/*.json"))


def _recorded_digests() -> dict[str, str]:
    digests: dict[str, str] = {}
    for line in (PAYLOADS / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            digests[name.strip()] = digest
    return digests


def test_every_payload_is_classified() -> None:
    assert set(_payload_files()) == set(KIND) | set(EXPECTED_INVALID)
    assert not set(KIND) & set(EXPECTED_INVALID)


@pytest.mark.parametrize("software", SOFTWARE)
def test_each_software_folder_documents_its_sources(software: str) -> None:
    readme = (PAYLOADS / software / "README.md").read_text(encoding="utf-8")
    for name in sorted(p.name for p in (PAYLOADS / software).glob("*.json")):
        assert name in readme, f"{software}/README.md does not say where {name} comes from"


def test_the_required_kinds_are_covered() -> None:
    # An actor of each software, a Lemmy Group, a Mastodon Create{Note}, Follow and poll Question,
    # and a Lemmy Announce.
    actors = {name.split("/")[0] for name, schema in KIND.items() if schema == "activitystreams/actor"}
    assert actors == set(SOFTWARE)
    assert load_json(PAYLOADS / "lemmy/group.json")["type"] == "Group"
    assert load_json(PAYLOADS / "mastodon/create_note.json")["object"]["type"] == "Note"
    assert load_json(PAYLOADS / "mastodon/follow.json")["type"] == "Follow"
    assert load_json(PAYLOADS / "mastodon/question.json")["type"] == "Question"
    assert load_json(PAYLOADS / "lemmy/announce_create_page.json")["type"] == "Announce"


@pytest.mark.parametrize("name", _payload_files())
def test_payloads_are_byte_faithful_to_their_recording(name: str) -> None:
    digest = hashlib.sha256((PAYLOADS / name).read_bytes()).hexdigest()
    assert _recorded_digests().get(name) == digest, f"{name} changed (or is missing from SHA256SUMS)"


@pytest.mark.parametrize("name", sorted(KIND))
def test_real_payloads_satisfy_the_lenient_schemas(name: str) -> None:
    validation.validate(load_json(PAYLOADS / name), KIND[name])


def test_known_bad_payloads_are_refused() -> None:
    for name, (schema, _reason) in EXPECTED_INVALID.items():
        with pytest.raises(InvalidDocument):
            validation.validate(load_json(PAYLOADS / name), schema)


@pytest.mark.parametrize("name", _payload_files())
def test_real_payloads_take_the_plain_json_fast_path(name: str) -> None:
    document = load_json(PAYLOADS / name)
    assert jsonld.uses_only_known_contexts(document) is True
    assert jsonld.has_forbidden_keywords(document) is False


def test_the_sums_file_lists_only_existing_files() -> None:
    for name in _recorded_digests():
        assert (PAYLOADS / name).is_file(), name
