"""federation.vocab.events: Mobilizon's event payloads read, and our events rendered, as
Mobilizon writes them (docs/federation.md "Events")."""

from __future__ import annotations

from datetime import UTC, datetime

from federation.vocab import events, parse
from federation.vocab.activities import Accept, Create, Join, Leave, Update
from federation.vocab.entraide import Kind, kind_of
from federation.vocab.events import EventInfo, EventStatus, JoinMode, Place
from federation.vocab.objects import Content
from tests.schemas.helpers import load_payload


def test_mobilizons_event_create_is_read_with_its_calendar_facts() -> None:
    doc = load_payload("mobilizon/create_event.json")
    activity = parse.parse_activity(doc)
    assert isinstance(activity, Create) and activity.object is not None
    content = activity.object.value
    assert isinstance(content, Content) and kind_of(content) is Kind.EVENT
    info = events.read_event(doc["object"])
    assert info is not None
    assert info.start == datetime(2027, 1, 14, 17, 30, tzinfo=UTC)
    assert info.end == datetime(2027, 1, 14, 19, 30, tzinfo=UTC)
    assert info.timezone == "Europe/Paris" and info.join_mode is JoinMode.RESTRICTED
    assert info.capacity == 40 and info.status is EventStatus.CONFIRMED and info.category == "MEETING"
    assert info.place == Place(
        name="Maison des associations",
        street="6 cours des Alliés",
        locality="Rennes",
        postal_code="35000",
        region="Bretagne",
        country="France",
    )
    assert info.online_url == "https://visio.mobilizon.test/table-ronde"


def test_mobilizons_cancelling_update_reads_as_cancelled() -> None:
    doc = load_payload("mobilizon/update_event_cancelled.json")
    assert isinstance(parse.parse_activity(doc), Update)
    info = events.read_event(doc["object"])
    assert info is not None and info.status is EventStatus.CANCELLED


def test_mobilizons_join_accept_and_leave_parse_and_the_message_is_found() -> None:
    join = load_payload("mobilizon/join_event.json")
    assert isinstance(parse.parse_activity(join), Join)
    assert events.participation_message(join) == "Je viendrai avec une personne accompagnante."
    accept = parse.parse_activity(load_payload("mobilizon/accept_join.json"))
    assert isinstance(accept, Accept) and accept.object_id == "https://entraide.test/activities/JOIN"
    assert isinstance(parse.parse_activity(load_payload("mobilizon/leave_event.json")), Leave)


def test_unreadable_terms_fall_back_to_safe_defaults() -> None:
    info = events.read_event(
        {
            "name": "x",
            "startTime": "2027-01-01T10:00:00Z",
            "endTime": "2026-01-01T10:00:00Z",  # before the start: dropped
            "timezone": "../../etc/passwd",
            "joinMode": "whatever",  # never read as "anyone at once"
            "maximumAttendeeCapacity": -3,
            "ical:status": "POSTPONED",
        }
    )
    assert info is not None
    assert info.end is None and info.timezone == "UTC" and info.join_mode is JoinMode.RESTRICTED
    assert info.capacity is None and info.status is EventStatus.CONFIRMED
    assert events.read_event({"name": "x"}) is None


def test_our_event_terms_are_mobilizons_and_the_summary_is_readable_and_escaped() -> None:
    info = EventInfo(
        name="<script>Réunion</script>",
        start=datetime(2026, 12, 10, 17, 30, tzinfo=UTC),
        end=datetime(2026, 12, 10, 19, 0, tzinfo=UTC),
        timezone="Europe/Paris",
        place=Place(name="Salle", locality="Lyon"),
        join_mode=JoinMode.RESTRICTED,
        capacity=10,
        participant_count=3,
        status=EventStatus.CANCELLED,
    )
    terms = events.render_event_terms(info)
    assert (
        terms["startTime"] == "2026-12-10T18:30:00+01:00" and terms["endTime"] == "2026-12-10T20:00:00+01:00"
    )
    assert terms["ical:status"] == "CANCELLED" and terms["remainingAttendeeCapacity"] == 7
    assert terms["location"] == {
        "type": "Place",
        "name": "Salle",
        "address": {"type": "PostalAddress", "addressLocality": "Lyon"},
    }
    summary = events.summary_html(info, "https://here.test/objects/1")
    assert "<script>" not in summary and "CANCELLED · &lt;script&gt;" in summary
    assert "2026-12-10 18:30 – 20:00 (Europe/Paris)" in summary and "Salle, Lyon" in summary
