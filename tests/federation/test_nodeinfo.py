"""federation.nodeinfo: the discovery index (with FEP-2677) and a NodeInfo 2.1 document that validates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from federation.nodeinfo import (
    APPLICATION_REL,
    NODEINFO_20_SCHEMA,
    NODEINFO_21_SCHEMA,
    AssociationSummary,
    NodeDescription,
    NodeUsage,
    render_nodeinfo,
    render_nodeinfo_index,
)
from federation.types import Iri

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "schemas" / "nodeinfo-2.1.schema.json"
NODEINFO_21 = Draft4Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))

APPLICATION_ACTOR = Iri("https://entraide.test/actor")

NODE = NodeDescription(
    node_name="Entraide du quartier",
    software_version="0.1.0",
    usage=NodeUsage(users_total=12, local_posts=40, users_active_month=5, users_active_halfyear=9),
    associations=(
        AssociationSummary("collectif", "Collectif santé", Iri("https://entraide.test/groups/collectif")),
        AssociationSummary("jardin", "Jardin partagé", Iri("https://entraide.test/groups/jardin")),
    ),
)


def schema_errors(document: object) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in NODEINFO_21.iter_errors(document)]


# --- the /.well-known/nodeinfo index ---------------------------------------------------------


def test_index_links_nodeinfo_21_and_20_and_the_application_actor() -> None:
    """Lemmy and Fedify read 2.1, Mastodon and GoToSocial 2.0; FEP-2677 names the Application actor."""
    index = render_nodeinfo_index(
        "https://entraide.test/nodeinfo/2.1", "https://entraide.test/nodeinfo/2.0", APPLICATION_ACTOR
    )
    links = {link["rel"]: link["href"] for link in index["links"]}
    assert links == {
        "http://nodeinfo.diaspora.software/ns/schema/2.1": "https://entraide.test/nodeinfo/2.1",
        "http://nodeinfo.diaspora.software/ns/schema/2.0": "https://entraide.test/nodeinfo/2.0",
        "https://www.w3.org/ns/activitystreams#Application": APPLICATION_ACTOR,
    }
    assert (NODEINFO_21_SCHEMA, NODEINFO_20_SCHEMA, APPLICATION_REL) == tuple(links)


# --- the 2.1 document ------------------------------------------------------------------------


def test_the_fixture_is_the_official_21_schema() -> None:
    schema = NODEINFO_21.schema
    assert schema["id"] == "http://nodeinfo.diaspora.software/ns/schema/2.1#"
    Draft4Validator.check_schema(schema)


def test_nodeinfo_21_validates_against_the_official_schema() -> None:
    document = render_nodeinfo(NODE)
    assert schema_errors(document) == []
    assert document["version"] == "2.1"
    assert document["protocols"] == ["activitypub"]


def test_nodeinfo_with_the_fewest_figures_still_validates() -> None:
    """A fresh node with nothing measured yet and no association is still a valid document."""
    bare = NodeDescription(
        node_name="", software_version="0.0.0", usage=NodeUsage(users_total=0, local_posts=0)
    )
    assert schema_errors(render_nodeinfo(bare)) == []


def test_the_schema_would_catch_a_broken_document() -> None:
    """Guards the guard: the validator really refuses what the schema forbids."""
    document = render_nodeinfo(NODE)
    document["usage"]["users"]["activeMonth"] = None
    document["software"]["name"] = "Entraide"
    document["extra"] = True
    assert len(schema_errors(document)) == 3


def test_software_name_is_a_lower_case_slug() -> None:
    """NodeInfo requires ``^[a-z0-9-]+$``; crawlers group nodes by this name."""
    name = render_nodeinfo(NODE)["software"]["name"]
    assert re.fullmatch(r"[a-z0-9-]+", name)
    assert name == "entraide"


def test_software_version_is_the_one_given() -> None:
    assert render_nodeinfo(NODE)["software"]["version"] == "0.1.0"


def test_activity_counts_we_do_not_measure_are_absent_not_null() -> None:
    """The schema types them as integers: a null would make the whole document invalid."""
    # Given usage without monthly or half-year activity
    usage = NodeUsage(users_total=3, local_posts=0)
    # When rendered
    users = render_nodeinfo(NodeDescription("n", "1", usage))["usage"]["users"]
    # Then the keys are left out entirely
    assert users == {"total": 3}
    assert "activeMonth" not in users
    assert "activeHalfyear" not in users


def test_a_zero_activity_count_is_kept() -> None:
    """Zero is a measurement, not an absence."""
    usage = NodeUsage(users_total=3, local_posts=0, users_active_month=0, users_active_halfyear=0)
    users = render_nodeinfo(NodeDescription("n", "1", usage))["usage"]["users"]
    assert users == {"total": 3, "activeMonth": 0, "activeHalfyear": 0}


def test_registrations_are_closed_unless_opened() -> None:
    assert render_nodeinfo(NODE)["openRegistrations"] is False
    opened = NodeDescription("n", "1", NodeUsage(0, 0), open_registrations=True)
    assert render_nodeinfo(opened)["openRegistrations"] is True


def test_metadata_lists_public_association_facts_only() -> None:
    metadata = render_nodeinfo(NODE)["metadata"]
    assert metadata["nodeName"] == "Entraide du quartier"
    assert metadata["associations"] == [
        {"handle": "collectif", "name": "Collectif santé", "actor": "https://entraide.test/groups/collectif"},
        {"handle": "jardin", "name": "Jardin partagé", "actor": "https://entraide.test/groups/jardin"},
    ]


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_the_document_states_the_version_asked_for(version: str) -> None:
    assert render_nodeinfo(NODE, version=version)["version"] == version
