"""Peer JSON → frozen values: the only place that reads raw inbound dicts (docs/architecture.md R2).

Model (a) of docs/security.md case 21: documents are read as plain JSON, by their compact
keys; ``@context`` is never used to read fields (:func:`check_json_ld` only makes sure that no
context *visible to us* gives those keys another meaning). Every reader is defensive about the
shapes real peers send (docs/interop.md): a value may be a string, a list, or an object with an
``id``; ``type`` may be a list; the public collection has three spellings; Lemmy relays activities
inside ``Announce``; ``Accept``/``Reject``/``Undo`` embed their object or name it.

Size limits (security case 28) follow Mastodon's published table; the constants live in
:mod:`federation.limits` (re-exported here), and :data:`SIZE_LIMITS` is that table as data. Actors
are read by :func:`federation.actors_remote.read_actor`, which :func:`parse_actor` builds on.
"truncated" limits cut a
document that only exceeds them; "rejected" limits raise :class:`~federation.errors.InvalidDocument`.
Actors are also checked against the lenient JSON Schema (they are read rarely, when fetched);
activities and objects, read on every inbox request, are not (see ``docs/performance.md``).

Every IRI we keep from an id-like field (``id``, ``actor``, ``object``, ``target``,
``attributedTo``, ``inReplyTo``, addressing, actor endpoints and keys) must be an absolute
http(s) IRI of at most :data:`MAX_IRI_CHARS` characters with a valid host and no user info,
else the document is refused with an error naming the field. Link-like fields (``url``,
``icon``, tag ``href``, ``context``) are kept only when they are such an IRI, and silently
dropped otherwise (Mastodon's ``context`` is often a ``tag:`` URI).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from itertools import accumulate
from types import MappingProxyType
from typing import Any, Final

import schemas

from .. import jsonld, validation
from ..actors_remote import ACTOR_TYPES, read_actor, same_origin_iri
from ..compat import lemmy, mastodon, mobilizon
from ..errors import InvalidDocument, MalformedPayload
from ..iri import MAX_IRI_CHARS, is_http_iri
from ..limits import (
    MAX_ALSO_KNOWN_AS,
    MAX_ATTACHMENTS,
    MAX_ATTRIBUTED_TO,
    MAX_EMBED_DEPTH,
    MAX_FLAG_OBJECTS,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_MULTIKEYS,
    MAX_NAME_CHARS,
    MAX_POLL_OPTIONS,
    MAX_PREFERRED_USERNAME_CHARS,
    MAX_PROFILE_FIELD_CHARS,
    MAX_PROFILE_FIELDS,
    MAX_PUBLIC_KEYS,
    MAX_RECIPIENTS,
    MAX_SUMMARY_CHARS,
    MAX_TAGS,
    SIZE_LIMITS,
    SizeLimit,
)
from ..types import AS_PUBLIC, Iri, JsonObject
from .activities import (
    ACTIVITY_CLASSES,
    Activity,
    Flag,
    ObjectRef,
    UnknownActivity,
)
from .objects import (
    ActorKey,
    Article,
    Content,
    Document,
    Image,
    Member,
    Multikey,
    Note,
    Page,
    PollOption,
    ProfileField,
    Question,
    RemoteActor,
    Tag,
    Tombstone,
)

__all__ = [
    "ACTOR_TYPES",
    "MAX_ALSO_KNOWN_AS",
    "MAX_ATTACHMENTS",
    "MAX_ATTRIBUTED_TO",
    "MAX_EMBED_DEPTH",
    "MAX_FLAG_OBJECTS",
    "MAX_IRI_CHARS",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_MULTIKEYS",
    "MAX_NAME_CHARS",
    "MAX_POLL_OPTIONS",
    "MAX_PREFERRED_USERNAME_CHARS",
    "MAX_PROFILE_FIELDS",
    "MAX_PROFILE_FIELD_CHARS",
    "MAX_PUBLIC_KEYS",
    "MAX_RECIPIENTS",
    "MAX_SUMMARY_CHARS",
    "MAX_TAGS",
    "SIZE_LIMITS",
    "ActivityHeader",
    "SizeLimit",
    "check_json_depth",
    "check_json_ld",
    "decode_json_object",
    "parse_activity",
    "parse_actor",
    "parse_member",
    "parse_object",
    "peek_activity",
]

_MAX_TYPES: Final = 64
_MAX_SHORT_TEXT: Final = 255  # media types, tag names, blurhash, language
_MAX_DATE_CHARS: Final = 64


_CONTENT_CLASSES: Final[dict[str, type[Content]]] = {
    "Note": Note,
    "Article": Article,
    lemmy.PAGE_TYPE: Page,
    "Question": Question,
    "Document": Document,
    "Audio": Document,
    "Video": Document,
    "Image": Image,
}

# --------------------------------------------------------------------------------------------
# Decoding: bytes → one JSON object, bounded (security case 28)
# --------------------------------------------------------------------------------------------

# A JSON string in unrolled-loop form, which also matches an *unterminated* string up to the end of
# the text. Every attempt therefore succeeds and consumes what it scanned, so the pass is linear:
# a pattern requiring the closing quote would rescan the rest of the text from every quote of an
# unterminated string made of escaped quotes, which is quadratic (hours for a 1 MiB body).
_JSON_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*\\?(?:"|\Z)', re.DOTALL)
_BRACKETS: Final = re.compile(r"[\[\]{}]")
_DEPTH_DELTA: Final = {"[": 1, "{": 1, "]": -1, "}": -1}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def check_json_depth(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON text nested deeper than ``max_depth``, measured before decoding, without recursion.

    Every decoder of a peer's or a client's JSON calls this first: the code that walks a decoded
    value (NUL checks, schema validation, sanitising) may then recurse safely (security cases
    28 and 58).

    Raises:
        MalformedPayload: nested too deeply.
    """
    # The depth cannot exceed the number of opening brackets (those inside strings included):
    # when that count is within the limit, as in nearly every real activity, the scan is skipped.
    if text.count("[") + text.count("{") > max_depth:
        structure = _BRACKETS.findall(_JSON_STRING.sub("", text))
        deepest = max(accumulate(_DEPTH_DELTA[b] for b in structure), default=0)
        if deepest > max_depth:
            raise MalformedPayload(f"the JSON document is nested deeper than {max_depth} levels")


def decode_json_object(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> JsonObject:
    """Decode ``body`` as one UTF-8 JSON object whose nesting is at most ``max_depth``.

    The depth is measured on the text *before* decoding, without recursion (strings are
    skipped by a linear regular expression, then brackets are counted), so a 10,000-deep
    ``[[[[…`` costs one pass and CPython's recursive decoder never sees it (security case 28:
    ``json.loads`` raises ``RecursionError`` there). ``RecursionError`` is still caught as a last
    line of defence. ``NaN``/``Infinity`` and integers longer than CPython's limit are refused.

    Raises:
        MalformedPayload: not UTF-8, not JSON, not an object at the top level, or too deep.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayload("the body is not UTF-8") from exc
    check_json_depth(text, max_depth=max_depth)
    try:
        if text.startswith("\ufeff"):  # as json.loads, whose decoder is built per call with options
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except RecursionError as exc:  # unreachable after the scan; never let it escape
        raise MalformedPayload("the JSON document is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, over-long integers
        raise MalformedPayload(f"the body is not valid JSON: {str(exc)[:120]}") from exc
    if not isinstance(value, dict):
        raise MalformedPayload("the JSON document is not an object")
    if ("\\u" in text or "\x00" in text) and contains_unstorable(value):
        # Not text: no database stores them (PostgreSQL's jsonb refuses the row). Replaced by
        # U+FFFD, as a UTF-8 decoder would, so that the peer's activity is still accepted.
        cleaned: JsonObject = _replace_unstorable(value)
        return cleaned
    return value


def _replace_unstorable(value: Any) -> Any:
    """A copy with NUL and lone surrogates replaced by U+FFFD (depth already bounded)."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_unstorable(k): _replace_unstorable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_unstorable(v) for v in value]
    return value


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def contains_unstorable(value: Any) -> bool:
    """Does any string (key or value) in a decoded JSON value hold U+0000 or a lone surrogate?

    ``json.loads`` accepts both as escapes (``\\u0000``, ``\\ud800``) but they are not text:
    PostgreSQL's ``jsonb`` refuses them and no legitimate ActivityStreams document needs one.
    Iterative: the depth was already bounded by the caller.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# --------------------------------------------------------------------------------------------
# JSON-LD screening (security cases 20, 21 and 23)
# --------------------------------------------------------------------------------------------


def check_json_ld(doc: JsonObject) -> None:
    """Refuse documents whose JSON-LD could be read differently from their plain JSON.

    Two checks, on every ``@context`` and key of the document, at any depth:

    - case 20: ``@graph``, ``@included`` or ``@reverse`` used as keys, or an inline alias of them
      (:func:`federation.jsonld.has_forbidden_keywords`);
    - case 21, model (a): a context that redefines a core ActivityStreams/security term or
      aliases a keyword (:func:`federation.jsonld.uses_only_known_contexts`).

    Context IRIs we do not ship (Pleroma's per-instance ``/schemas/litepub-0.1.jsonld``, say)
    are never fetched (case 23) and therefore cannot change how *we* read the document: they are
    left out of the analysis, as case 23 prescribes for documents we read as plain JSON.
    Nothing in Entraide grants anything on the strength of a Linked Data signature, so a
    context only we cannot see has no reading that we act on.

    A top-level Linked Data ``signature`` block is left out as well: we never read or verify it
    (no access is granted on an LD signature), and Fedify gives it its own ``@context``
    (identity v1), which only scopes that block and would otherwise look like a redefinition
    of core terms. Nothing inside it is ever used.

    Raises:
        InvalidDocument: a forbidden keyword or a core-term redefinition was found.
    """
    if "signature" in doc:
        doc = {key: value for key, value in doc.items() if key != "signature"}
    forbidden, plain_json = _screen(doc)
    if forbidden:
        raise InvalidDocument(
            "JSON-LD @graph, @included and @reverse (or aliases of them, or a @context too malformed"
            " to rule them out) are not accepted",
            rule="jsonld_keyword",
        )
    if not plain_json:
        raise InvalidDocument(
            "the @context redefines a core ActivityStreams term or aliases a keyword", rule="jsonld_context"
        )


def _screen(doc: JsonObject) -> tuple[bool, bool]:
    """(forbidden keywords?, readable as plain JSON?) for :func:`check_json_ld`.

    Nearly every activity has one ``@context``, at the top: its verdicts are then computed once
    per distinct context (:func:`federation.jsonld.screen_top_level_context`) and the document
    is walked once. Anything else goes through the general checks.
    """
    nodes = jsonld.objects_of(doc)
    if not any("@context" in node for node in nodes[1:]):
        if "@context" not in doc:  # no context at all: nothing is redefined
            return jsonld.has_keyword_keys(nodes), True
        known = schemas.context_iris()
        context = doc["@context"]
        if _has_unknown_context(context, known):
            context = _filter_context(context, known)
        verdict = jsonld.screen_top_level_context(context, nodes)
        if verdict is not None:
            return verdict
    screened = _without_unknown_contexts(doc)
    return jsonld.has_forbidden_keywords(screened), jsonld.uses_only_known_contexts(screened)


def _without_unknown_contexts(doc: JsonObject) -> Any:
    known = schemas.context_iris()
    # Fast path: most documents only name contexts we ship; no copy is needed then.
    if not any(_has_unknown_context(ctx, known) for ctx in _contexts(doc)):
        return doc
    return _copy_filtering_contexts(doc, known)


def _contexts(doc: Any) -> Iterable[Any]:
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "@context" in node:
                yield node["@context"]
            stack.extend(v for k, v in node.items() if k != "@context")
        elif isinstance(node, list):
            stack.extend(node)


def _has_unknown_context(value: Any, known: frozenset[str]) -> bool:
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, str) and item not in known for item in items)


def _copy_filtering_contexts(doc: Any, known: frozenset[str]) -> Any:
    """An iterative deep copy in which unknown context IRIs are removed from every ``@context``."""
    root: list[Any] = [None]
    # (source, container, key) triples: copy ``source`` into ``container[key]``.
    stack: list[tuple[Any, Any, Any]] = [(doc, root, 0)]
    while stack:
        source, container, key = stack.pop()
        if isinstance(source, dict):
            copied: dict[str, Any] = {}
            container[key] = copied
            for name, value in source.items():
                if name == "@context":
                    copied[name] = _filter_context(value, known)
                else:
                    stack.append((value, copied, name))
        elif isinstance(source, list):
            items: list[Any] = [None] * len(source)
            container[key] = items
            stack.extend((value, items, index) for index, value in enumerate(source))
        else:
            container[key] = source
    return root[0]


def _filter_context(value: Any, known: frozenset[str]) -> Any:
    if isinstance(value, str):
        return value if value in known else {}
    if isinstance(value, list):
        return [item for item in value if not isinstance(item, str) or item in known]
    return value


# --------------------------------------------------------------------------------------------
# Small readers
# --------------------------------------------------------------------------------------------


def _detail(field: str, message: str) -> InvalidDocument:
    return InvalidDocument(f"{field}: {message}", field=field)


def _iri(value: object, field: str) -> Iri:
    if not is_http_iri(value):
        shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
        raise _detail(field, f"{shown} is not an absolute http(s) IRI of at most {MAX_IRI_CHARS} characters")
    return Iri(value)


def _maybe_iri(value: object) -> Iri | None:
    """``value`` as an IRI when it is a usable http(s) IRI, else ``None`` (for link-like fields)."""
    return Iri(value) if is_http_iri(value) else None


def _id_of(value: object) -> object:
    """The IRI a value stands for: the string itself, or an object's ``id`` (``href`` for a Link)."""
    if isinstance(value, dict):
        return value.get("id", value.get("href"))
    return value


def _first(value: object) -> object:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _ref_iri(value: object, field: str) -> Iri | None:
    """A single reference (string, ``{id}`` or a list whose first item is one); ``None`` if absent."""
    value = _first(value)
    if value is None:
        return None
    return _iri(_id_of(value), field)


def _iri_list(value: object, field: str, *, limit: int) -> tuple[Iri, ...]:
    """Several references (string, ``{id}`` or a list of them), deduplicated; over ``limit`` is refused."""
    items = value if isinstance(value, list) else ([] if value is None else [value])
    if len(items) > limit:
        raise _detail(field, f"more than {limit} entries")
    return tuple(dict.fromkeys(_iri(_id_of(item), field) for item in items if item is not None))


def _audience(value: object, field: str) -> tuple[Iri, ...]:
    """``to``/``cc``/``audience``: IRIs (any spelling of Public normalised to ``AS_PUBLIC``) or ``{id}``."""
    items = value if isinstance(value, list) else ([] if value is None else [value])
    if len(items) > MAX_RECIPIENTS:
        raise _detail(field, f"more than {MAX_RECIPIENTS} recipients")
    out: dict[Iri, None] = {}
    for item in items:
        raw = _id_of(item)
        if mastodon.is_public_alias(raw):
            out[AS_PUBLIC] = None
        elif raw is not None:
            out[_iri(raw, field)] = None
    return tuple(out)


def _link(value: object) -> Iri | None:
    """A link-like field, leniently: the first http(s) IRI among strings, ``Link``s and ``{url}``/``{href}``.

    Among several links, a ``text/html`` one is preferred (PeerTube lists the video files too).
    """
    items = value if isinstance(value, list) else [value]
    found: list[tuple[bool, Iri]] = []
    for item in items[:64]:
        media: object = None
        if isinstance(item, dict):
            media = item.get("mediaType")
            item = item.get("href", item.get("url"))
            if isinstance(item, dict | list):
                item = _first(item)
                item = item.get("href") if isinstance(item, dict) else item
        if is_http_iri(item):
            found.append((media == "text/html", Iri(item)))
    for is_html, iri in found:
        if is_html:
            return iri
    return found[0][1] if found else None


_SURROGATES: Final = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    # JSON may carry lone UTF-16 surrogates ("\ud800"), which cannot be encoded to UTF-8 and
    # would crash storage or rendering later (never 5xx on peer input, security §0).
    if text.isascii():
        return text
    return _SURROGATES.sub("\ufffd", text)


def _text(value: object, limit: int | None = None) -> str | None:
    if not isinstance(value, str):
        return None
    if limit is not None and len(value) > limit:
        value = value[:limit]
    return _clean(value)


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _count(value: object) -> int | None:
    # bool is an int subclass: ``true`` is not a count.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _datetime(value: object) -> datetime | None:
    """An ISO 8601 / RFC 3339 timestamp as an aware UTC datetime; ``None`` when absent or unreadable."""
    if not isinstance(value, str) or not value or len(value) > _MAX_DATE_CHARS:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # Lemmy once sent naive times; they are UTC
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _types(doc: Mapping[str, Any], field: str = "type") -> tuple[str, ...]:
    raw = doc.get("type")
    items = raw if isinstance(raw, list) else [raw]
    names = tuple(item for item in items[:_MAX_TYPES] if isinstance(item, str) and item)
    if not names:
        raise _detail(field, "missing or not a type name")
    return names


def _pick(types: tuple[str, ...], known: Iterable[str]) -> str | None:
    known_set = set(known)
    return next((name for name in types if name in known_set), None)


@cache
def _entraide_terms() -> frozenset[str]:
    """Terms of our published context that describe content (``severity``, ``validUntil``, ...)."""
    context = schemas.load_context("https://w3id.org/entraide/v1") or {}
    terms = context.get("@context", {})
    skip = {"entraide", "xsd", "members", "postingRestrictedToMods"}
    return frozenset(t for t in terms if t not in skip and not t.startswith("@") and not t[:1].isupper())


def _extra(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    found = {term: doc[term] for term in _entraide_terms() if term in doc}
    return MappingProxyType(found) if found else MappingProxyType({})


def _limited(doc: JsonObject, lists: Mapping[str, int]) -> JsonObject:
    """A shallow copy with the "truncated" limits applied to ``name``/``summary`` and the given lists.

    Applied before schema validation, so that the published "truncated" limits truncate instead
    of failing the schema's bounds.
    """
    copy = dict(doc)
    if isinstance(copy.get("name"), str) and len(copy["name"]) > MAX_NAME_CHARS:
        copy["name"] = copy["name"][:MAX_NAME_CHARS]
    if isinstance(copy.get("summary"), str) and len(copy["summary"]) > MAX_SUMMARY_CHARS:
        copy["summary"] = copy["summary"][:MAX_SUMMARY_CHARS]
    for key, limit in lists.items():
        if isinstance(copy.get(key), list) and len(copy[key]) > limit:
            copy[key] = copy[key][:limit]
    return copy


def _validate(doc: JsonObject, schema: str) -> None:
    validation.validate(doc, schema)


# --------------------------------------------------------------------------------------------
# Peeking before the signature is verified
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivityHeader:
    """What the inbox may look at before verifying a signature: types, actor and object id.

    Read exactly as :func:`parse_activity` reads them, but never raising: a field that cannot be
    read is ``None``, and parsing will refuse the document later.
    """

    types: tuple[str, ...]
    actor: Iri | None
    object_id: Iri | None

    @property
    def is_self_delete(self) -> bool:
        """``Delete{actor: X, object: X}``: an actor deleting itself (security case 6)."""
        return "Delete" in self.types and self.actor is not None and self.actor == self.object_id


def peek_activity(doc: JsonObject) -> ActivityHeader:
    """Read an activity's types, actor and object id without validating anything else.

    Guarantees: never raises; the actor is read by the same rules as :func:`parse_activity`
    (a single actor, as a string or ``{id}``, or a list of one distinct actor).
    """
    try:
        types = _types(doc)
    except InvalidDocument:
        types = ()
    try:
        actor: Iri | None = _single_actor(doc.get("actor"))
    except InvalidDocument:
        actor = None
    try:
        object_id = _ref_iri(doc.get("object"), "object")
    except InvalidDocument:
        object_id = None
    return ActivityHeader(types, actor, object_id)


def _single_actor(value: object) -> Iri:
    actors = _iri_list(value, "actor", limit=16)
    if not actors:
        raise _detail("actor", "missing")
    if len(actors) > 1:
        # Several distinct actors make "the signer is the actor" ambiguous (security case 1).
        raise _detail("actor", "an activity must have exactly one actor")
    return actors[0]


# --------------------------------------------------------------------------------------------
# Activities
# --------------------------------------------------------------------------------------------


def parse_activity(doc: JsonObject) -> Activity:
    """Read an inbound activity: any type, embedded or referenced objects, addressing.

    The document is read field by field, each field checked as it is read (IRIs, addressing,
    sizes); the lenient ``activitystreams/activity`` schema is the contract this reading keeps,
    checked in tests rather than on every request (it cost 25 times the parse). Known types give their class
    (:data:`~federation.vocab.activities.ACTIVITY_CLASSES`); with several types the first known
    one wins; other types give :class:`~federation.vocab.activities.UnknownActivity`.

    ``object``/``target`` become :class:`~federation.vocab.activities.ObjectRef` values: a string
    gives a bare reference; an embedded object is parsed (an activity, content, a Tombstone, an
    actor, a Mobilizon ``Member``) and kept with its id; a list gives its first item, except for
    ``Flag`` whose ``objects`` keeps them all. Embedded activities deeper than
    :data:`MAX_EMBED_DEPTH` are kept as references. This function does *not* apply origin
    rules: :func:`federation.inbox.receive` decides which embedded values may be trusted.

    Guarantees: ``bto``/``bcc`` are dropped; the public collection is :data:`AS_PUBLIC`; every
    kept IRI satisfies :func:`is_http_iri`.

    Raises:
        InvalidDocument: a missing/invalid ``id`` or ``actor``, several
            actors, an invalid IRI in an id-like field (the message names the field), or a
            "rejected" size limit.
    """
    return _activity(doc, depth=0)


def _activity(doc: JsonObject, *, depth: int) -> Activity:
    # No JSON Schema here: every field we use is checked below, and the schema costs more than
    # the rest of the inbox (docs/performance.md). The schemas remain the contract, enforced by
    # tests/schemas (every recorded payload that parses also validates).
    types = _types(doc)
    name = _pick(types, ACTIVITY_CLASSES)
    common: dict[str, Any] = {
        "id": _iri(doc.get("id"), "id"),
        "actor": _single_actor(doc.get("actor")),
        "target": _embedded(doc.get("target"), "target", depth=depth + 1),
        "to": _audience(doc.get("to"), "to"),
        "cc": _audience(doc.get("cc"), "cc"),
        "audience": _audience(doc.get("audience"), "audience"),
        "published": _datetime(doc.get("published")),
        "summary": _text(doc.get("summary"), MAX_SUMMARY_CHARS),
        "content": _text(doc.get("content")),
        "types": types,
    }
    if name == Flag.TYPE:
        raw = doc.get("object")
        items = raw if isinstance(raw, list) else ([] if raw is None else [raw])
        if len(items) > MAX_FLAG_OBJECTS:
            raise _detail("object", f"a Flag may report at most {MAX_FLAG_OBJECTS} objects")
        refs = tuple(ref for item in items if (ref := _embedded(item, "object", depth=depth + 1)) is not None)
        return Flag(object=refs[0] if refs else None, objects=refs, **common)
    obj = _embedded(doc.get("object"), "object", depth=depth + 1)
    if name is None:
        return UnknownActivity(unknown_type=types[0], object=obj, **common)
    return ACTIVITY_CLASSES[name](object=obj, **common)


def _looks_like_activity(doc: Mapping[str, Any], types: tuple[str, ...]) -> bool:
    if _pick(types, ACTIVITY_CLASSES) is not None:
        return True
    # An activity type we do not model (Misskey's "EmojiReact", Lemmy's "Vote") has an actor and
    # an object. Mobilizon puts a non-standard ``actor`` (the creator) on resources, and Member
    # has both (it is handled before this is asked), so content types never count.
    return (
        "actor" in doc
        and "object" in doc
        and _pick(types, _CONTENT_CLASSES) is None
        and _pick(types, ACTOR_TYPES) is None
        and _pick(types, mobilizon.CONTENT_TYPES) is None
    )


def _embedded(value: object, field: str, *, depth: int) -> ObjectRef | None:
    """Read ``object``/``target``: an IRI, an embedded object, or a list (first item)."""
    value = _first(value)
    if value is None:
        return None
    if not isinstance(value, dict):
        return ObjectRef(_iri(value, field))
    # A Link names its target with ``href``, everything else with ``id``.
    raw_id = value.get("href") if value.get("type") == "Link" else value.get("id")
    ref_id = _iri(raw_id, f"{field}.id") if raw_id is not None else None
    try:
        types = _types(value, f"{field}.type")
    except InvalidDocument:
        if ref_id is None:
            raise
        return ObjectRef(ref_id)  # an untyped {"id": ...} is just a reference
    hint = types[0]
    if mobilizon.MEMBER_TYPE in types:
        return ObjectRef(ref_id, _member(value, field), hint)
    if _looks_like_activity(value, types):
        if depth > MAX_EMBED_DEPTH:
            return ObjectRef(ref_id, None, hint) if ref_id is not None else None
        return ObjectRef(ref_id, _activity(value, depth=depth), hint)
    if "Tombstone" in types:
        if ref_id is None:
            raise _detail(f"{field}.id", "a Tombstone needs an id")
        return ObjectRef(ref_id, _tombstone(value), hint)
    if _pick(types, ACTOR_TYPES) is not None and ref_id is not None:
        try:
            return ObjectRef(ref_id, parse_actor(value), hint)
        except InvalidDocument:
            # An embedded actor is never authoritative (keys come from its origin, case 8):
            # an incomplete one is just a reference.
            return ObjectRef(ref_id, None, hint)
    if hint == "Link" and ref_id is not None:
        return ObjectRef(ref_id, None, hint)  # a reference spelled as a Link
    return ObjectRef(ref_id, _content(value, field=field, require_id=False), hint)


def _missing(field: str) -> Iri:
    raise _detail(field, "missing")


def parse_member(doc: JsonObject) -> Member:
    """Read a Mobilizon ``Member`` (an item of a group's members collection, or an embedded object).

    Guarantees: ``actor`` and ``object`` (the group) are http(s) IRIs; an unknown ``role`` is
    ``None`` (see :func:`federation.compat.mobilizon.member_role`).

    Raises:
        InvalidDocument: not a ``Member``, or a missing/invalid ``id``, ``actor`` or ``object``.
    """
    if mobilizon.MEMBER_TYPE not in _types(doc):
        raise _detail("type", "not a Member")
    return _member(doc, "member")


def _member(doc: Mapping[str, Any], field: str) -> Member:
    raw_id = doc.get("id")
    return Member(
        id=_iri(raw_id, f"{field}.id") if raw_id is not None else None,
        actor=_ref_iri(doc.get("actor"), f"{field}.actor") or _missing(f"{field}.actor"),
        object=_ref_iri(doc.get("object"), f"{field}.object") or _missing(f"{field}.object"),
        role=mobilizon.member_role(doc.get("role")),
    )


# --------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------


def parse_object(doc: JsonObject) -> Content | Tombstone:
    """Read a content object (fetched by id, or found embedded) or a ``Tombstone``.

    Read field by field after the "truncated" limits (``name``, ``summary``, poll options); the
    lenient ``activitystreams/object`` schema is the contract, checked in tests. Known types
    give their class (``Note``, ``Article``, ``Page`` (Lemmy), ``Question``,
    ``Document``/``Audio``/``Video``, ``Image``); other types give a plain
    :class:`~federation.vocab.objects.Content` with ``type`` kept (Mobilizon ``Event`` and
    ``ResourceCollection``, ...).

    Raises:
        InvalidDocument: an activity or an actor instead of an object; an
            invalid IRI in an id-like field (the message names it); a "rejected" size limit.
    """
    types = _types(doc)
    if "Tombstone" in types:
        return _tombstone(doc)
    if _pick(types, ACTIVITY_CLASSES) is not None or _pick(types, ACTOR_TYPES) is not None:
        raise _detail("type", f"{types[0]!r} is not a content object")
    return _content(doc, field="object", require_id=True)


def _tombstone(doc: JsonObject) -> Tombstone:
    return Tombstone(
        id=_iri(doc.get("id"), "id"),
        former_type=_text(doc.get("formerType"), _MAX_SHORT_TEXT),
        deleted=_datetime(doc.get("deleted")),
        published=_datetime(doc.get("published")),
        updated=_datetime(doc.get("updated")),
    )


def _content(doc: JsonObject, *, field: str, require_id: bool) -> Content:
    limited = _limited(doc, {"oneOf": MAX_POLL_OPTIONS, "anyOf": MAX_POLL_OPTIONS})
    types = _types(doc, f"{field}.type")
    name = _pick(types, _CONTENT_CLASSES)
    cls: type[Content] = _CONTENT_CLASSES[name] if name is not None else Content
    content, language = _content_and_language(doc)
    common: dict[str, Any] = {
        "id": _iri(doc.get("id"), f"{field}.id") if require_id or doc.get("id") is not None else None,
        "type": name or types[0],
        "types": types,
        "attributed_to": _iri_list(doc.get("attributedTo"), f"{field}.attributedTo", limit=MAX_ATTRIBUTED_TO),
        "content": content,
        "summary": _text(limited.get("summary")),
        "name": _text(limited.get("name")),
        "in_reply_to": _ref_iri(doc.get("inReplyTo"), f"{field}.inReplyTo"),
        "context": _link(_id_of(_first(doc.get("context")))),
        "audience": _audience(doc.get("audience"), f"{field}.audience"),
        "to": _audience(doc.get("to"), f"{field}.to"),
        "cc": _audience(doc.get("cc"), f"{field}.cc"),
        "published": _datetime(doc.get("published")),
        "updated": _datetime(doc.get("updated")),
        "url": _link(lemmy.page_link(doc) if cls is Page else doc.get("url")),
        "tag": _tags(doc.get("tag")),
        "attachment": _attachments(doc.get("attachment")),
        "sensitive": _bool(doc.get("sensitive")) or False,
        "language": language,
        "media_type": _text(doc.get("mediaType"), _MAX_SHORT_TEXT),
        "extra": _extra(doc),
    }
    if cls is Question:
        return Question(**common, **_poll(limited))
    if cls is Page:
        return Page(
            **common,
            comments_enabled=_bool(doc.get("commentsEnabled")),
            stickied=_bool(doc.get("stickied")),
        )
    if issubclass(cls, Document):
        return cls(**common, **_media(doc))
    return cls(**common)


def _content_and_language(doc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    content = _text(doc.get("content"))
    language: str | None = None
    content_map = doc.get("contentMap")
    if isinstance(content_map, dict) and content_map:
        key, value = next(iter(content_map.items()))
        language = _text(key, _MAX_SHORT_TEXT)
        if content is None:
            content = _text(value)
    if language is None:
        language = lemmy.language_code(doc.get("language"))
    return content, language


def _poll(doc: Mapping[str, Any]) -> dict[str, Any]:
    one_of, any_of = doc.get("oneOf"), doc.get("anyOf")
    multiple = not (isinstance(one_of, list) and one_of) and isinstance(any_of, list) and bool(any_of)
    raw = any_of if multiple else one_of
    options: list[PollOption] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            replies = item.get("replies")
            votes = _count(replies.get("totalItems")) if isinstance(replies, dict) else None
            options.append(PollOption(_clean(item["name"]), votes))
    closed, closed_text = mastodon.poll_closed(doc.get("closed"))
    return {
        "options": tuple(options),
        "multiple": multiple,
        "end_time": _datetime(doc.get("endTime")),
        "closed": closed,
        "closed_at": _datetime(closed_text),
        "voters_count": _count(doc.get("votersCount")),
    }


def _media(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "width": _count(doc.get("width")),
        "height": _count(doc.get("height")),
        "blurhash": _text(doc.get("blurhash"), _MAX_SHORT_TEXT),
    }


def _tags(value: object) -> tuple[Tag, ...]:
    items = value if isinstance(value, list) else ([value] if isinstance(value, dict) else [])
    tags: list[Tag] = []
    for item in items[:MAX_TAGS]:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            continue
        kind = item["type"]
        href = mastodon.emoji_icon_url(item) if kind == "Emoji" else item.get("href", item.get("id"))
        tags.append(
            Tag(
                type=_clean(kind[:_MAX_SHORT_TEXT]),
                name=_text(item.get("name"), MAX_NAME_CHARS),
                href=_maybe_iri(href),
            )
        )
    return tuple(tags)


def _attachments(value: object) -> tuple[Document, ...]:
    items = value if isinstance(value, list) else ([value] if isinstance(value, dict) else [])
    out: list[Document] = []
    for item in items[:MAX_ATTACHMENTS]:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if not isinstance(kind, str) or kind == mastodon.PROFILE_FIELD_TYPE:
            continue
        cls = Image if kind == "Image" else Document
        url = _link(item.get("href") if kind == "Link" else item.get("url"))
        raw_id = item.get("id")
        out.append(
            cls(
                id=_maybe_iri(raw_id),
                type=_clean(kind[:_MAX_SHORT_TEXT]),
                types=(_clean(kind[:_MAX_SHORT_TEXT]),),
                name=_text(item.get("name"), MAX_NAME_CHARS),
                summary=_text(item.get("summary"), MAX_SUMMARY_CHARS),
                url=url,
                media_type=_text(item.get("mediaType"), _MAX_SHORT_TEXT),
                sensitive=_bool(item.get("sensitive")) or False,
                **_media(item),
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Actors
# --------------------------------------------------------------------------------------------


def parse_actor(doc: JsonObject) -> RemoteActor:
    """Read a peer's actor document (Person, Group, Application, Service, Organization).

    Validated against the lenient ``activitystreams/actor`` schema after the "truncated" limits
    (``publicKey`` 10, ``alsoKnownAs`` 256, profile fields 50 with names/values of 2047,
    ``name``, ``summary``), then read by :func:`federation.actors_remote.read_actor`, the one
    remote-actor reader: identity, endpoints, collections and keys follow its rules (keys owned
    by this actor and on its origin, a ``#fragment`` key on the actor's own document,
    ``preferredUsername`` of at most 255 characters). This function adds what the inbox shows:
    all the types, profile fields, ``featured``, ``members`` (Mobilizon's ``endpoints.members``
    when ``members`` is absent), ``attributedTo``, icon, ``discoverable``, ``published``;
    collections among them are kept only on the actor's origin, like ``followers``.

    Raises:
        InvalidDocument: schema violation (no inbox, not an actor type, ...), an invalid IRI in
            an id-like field (the message names it), or an unusable ``preferredUsername``.
    """
    username = doc.get("preferredUsername")
    if isinstance(username, str) and len(username) > MAX_PREFERRED_USERNAME_CHARS:
        raise _detail("preferredUsername", f"longer than {MAX_PREFERRED_USERNAME_CHARS} characters")
    limited = _limited(doc, {"publicKey": MAX_PUBLIC_KEYS, "alsoKnownAs": MAX_ALSO_KNOWN_AS})
    limited["attachment"] = _limited_profile_attachments(doc.get("attachment"))
    if limited["attachment"] is None:
        del limited["attachment"]
    _validate(limited, "activitystreams/actor")
    actor_id = _check_actor_iris(limited)
    core = read_actor(doc)
    return RemoteActor(
        id=core.id,
        type=core.type,
        types=_types(doc),
        preferred_username=core.preferred_username,
        name=_text(limited.get("name")),
        summary=_text(limited.get("summary")),
        inbox=core.inbox,
        outbox=core.outbox,
        followers=core.followers,
        following=core.following,
        shared_inbox=core.shared_inbox,
        featured=_collection(doc.get("featured"), "featured", actor_id),
        members=_collection(mobilizon.members_collection(doc), "members", actor_id),
        attributed_to=_collection(doc.get("attributedTo"), "attributedTo", actor_id),
        url=_link(doc.get("url")),
        icon_url=_link(_first(doc.get("icon"))),
        public_keys=tuple(ActorKey(k.id, k.owner, k.public_key_pem) for k in core.public_keys),
        multikeys=tuple(Multikey(m.id, m.controller, m.public_key_multibase) for m in core.assertion_methods),
        manually_approves_followers=core.manually_approves_followers,
        discoverable=_bool(doc.get("discoverable")),
        moved_to=core.moved_to,
        also_known_as=core.also_known_as,
        published=_datetime(doc.get("published")),
        fields=_profile_fields(limited.get("attachment")),
    )


def _check_actor_iris(doc: JsonObject) -> Iri:
    """Refuse an actor whose id-like fields are present but not http(s) IRIs, naming the field
    (:func:`read_actor` would drop them silently); ``doc`` has the "truncated" limits applied.
    Returns the actor's id."""
    _iri(doc.get("inbox"), "inbox")
    for field in ("outbox", "movedTo"):
        _optional_iri(doc.get(field), field)
    for field in ("followers", "following"):
        _ref_iri(doc.get(field), field)
    endpoints = doc.get("endpoints")
    if isinstance(endpoints, dict):
        _optional_iri(endpoints.get("sharedInbox"), "endpoints.sharedInbox")
    _iri_list(doc.get("alsoKnownAs"), "alsoKnownAs", limit=MAX_ALSO_KNOWN_AS)
    return _iri(doc.get("id"), "id")


def _collection(value: object, field: str, actor_id: Iri) -> Iri | None:
    """A collection reference, checked like any id-like field, kept only on the actor's origin."""
    return same_origin_iri(_ref_iri(value, field), actor_id)


def _optional_iri(value: object, field: str) -> Iri | None:
    return None if value is None else _iri(value, field)


def _limited_profile_attachments(value: object) -> object:
    """Apply the profile-field limits (50 fields, 2047 characters) to an actor's ``attachment``."""
    if not isinstance(value, list):
        return value
    out: list[Any] = []
    fields = 0
    for item in value:
        if isinstance(item, dict) and item.get("type") == mastodon.PROFILE_FIELD_TYPE:
            fields += 1
            if fields > MAX_PROFILE_FIELDS:
                continue
            item = dict(item)
            for key in ("name", "value"):
                if isinstance(item.get(key), str):
                    item[key] = item[key][:MAX_PROFILE_FIELD_CHARS]
        out.append(item)
    return out


def _profile_fields(value: object) -> tuple[ProfileField, ...]:
    items = value if isinstance(value, list) else []
    fields: list[ProfileField] = []
    for item in items:
        if isinstance(item, dict) and item.get("type") == mastodon.PROFILE_FIELD_TYPE:
            name, text = _text(item.get("name")), _text(item.get("value"))
            if name is not None and text is not None:
                fields.append(ProfileField(name, text))
    return tuple(fields[:MAX_PROFILE_FIELDS])
