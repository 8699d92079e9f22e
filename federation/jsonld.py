"""JSON-LD processing that never touches the network, and the checks that decide when to skip it.

Three things live here:

1. **An offline document loader** (:func:`load_document`). It serves the pinned context documents of
   ``schemas/contexts/`` (through :func:`schemas.load_context`) and raises
   :class:`~federation.errors.ContextNotAllowed` for every other URL. It is installed as pyld's
   process-wide default when this module is imported, *and* passed explicitly as the
   ``documentLoader`` option of every call below, so that neither a forgotten option nor another
   module resetting the default can make pyld fetch anything. pyld's stock loader fetches any
   http(s) URL, synchronously, with no private-address filter (``docs/security.md`` case 23).

2. **expand / compact** wrappers. Every pyld failure comes out as a :mod:`federation.errors` type:
   :class:`ContextNotAllowed` when a context outside the preloaded set was needed, otherwise
   :class:`InvalidDocument`. Attacker input must never surface as an unexpected exception.

3. **Two cheap, static checks on the source document** (no pyld involved):

   - :func:`uses_only_known_contexts` decides whether a document may be read as plain JSON (the fast
     path, model (a) of ``docs/security.md`` case 21): every context string is preloaded, and no
     context, inline or preloaded, changes the meaning of the core ActivityStreams and key terms we
     act on, or aliases a keyword.
   - :func:`has_forbidden_keywords` spots ``@graph``, ``@included`` and ``@reverse`` (or aliases of
     them, reverse properties and graph containers), the restructuring tricks that let a valid
     Linked Data signature cover a different reading of the document (case 20).

Model (a) in one sentence: we read compact JSON keys directly and grant nothing on the strength of
an LD signature; documents that fail :func:`uses_only_known_contexts` are either compacted against
our own context through :func:`compact` (and only the compacted output is read), or refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Final

from pyld import jsonld

import schemas
from federation.errors import ContextNotAllowed, InvalidDocument
from federation.types import JsonObject

__all__ = [
    "FORBIDDEN_KEYWORDS",
    "PROTECTED_TERMS",
    "compact",
    "expand",
    "has_forbidden_keywords",
    "load_document",
    "uses_only_known_contexts",
]

FORBIDDEN_KEYWORDS: Final[frozenset[str]] = frozenset({"@graph", "@included", "@reverse"})
"""JSON-LD keywords that restructure a graph without changing its canonical form (case 20)."""

# The terms whose meaning we act on when reading plain JSON: routing (type names), authorship and
# addressing, collections we page through, and the key material we verify signatures with. An
# inline context may restate them (Mastodon restates ``alsoKnownAs`` and ``Public``) but not change
# what they mean. Type names matter as much as properties: ``{"Follow": "as:Undo"}`` would make a
# JSON reader and a JSON-LD reader see different activities (docs/security.md case 21).
_PROTECTED_PROPERTIES: Final[frozenset[str]] = frozenset(
    # ActivityStreams core (https://www.w3.org/ns/activitystreams)
    """
    actor object target origin result instrument
    to cc bto bcc audience attributedTo inReplyTo context
    inbox outbox followers following liked endpoints sharedInbox
    preferredUsername alsoKnownAs url tag replies likes shares
    items orderedItems totalItems first last current next prev partOf
    oneOf anyOf closed endTime published updated deleted formerType
    content contentMap name nameMap summary summaryMap mediaType href as Public
    """.split()
    # Security vocabulary v1 (HTTP-signature keys) and DID v1 (FEP-521a assertionMethod)
    + "publicKey owner publicKeyPem assertionMethod controller".split()
)
PROTECTED_TERMS: Final[frozenset[str]] = _PROTECTED_PROPERTIES
"""Property names :func:`uses_only_known_contexts` protects (ActivityStreams type names are protected too)."""

# The contexts that give the protected terms their one accepted meaning.
_PINNED_CONTEXTS: Final[tuple[str, ...]] = (
    "https://www.w3.org/ns/activitystreams",
    "https://w3id.org/security/v1",
    "https://www.w3.org/ns/did/v1",
)
_KEYWORD_ALIASES_ALLOWED: Final[frozenset[tuple[str, str]]] = frozenset({("id", "@id"), ("type", "@type")})
# Context-level keywords an inline context may use. ``@base`` is left out on purpose: it changes
# how relative ids resolve, and no peer we federate with sends it.
_ALLOWED_CONTEXT_KEYWORDS: Final[frozenset[str]] = frozenset(
    {"@version", "@language", "@direction", "@vocab", "@protected", "@propagate", "@import"}
)
_MAX_CONTEXT_NESTING: Final[int] = 10
_MAX_URL_IN_MESSAGE: Final[int] = 200


# --------------------------------------------------------------------------------------------
# The offline loader
# --------------------------------------------------------------------------------------------


def load_document(url: str, options: Mapping[str, Any] | None = None) -> JsonObject:
    """pyld document loader that serves only the contexts pinned in ``schemas/contexts/``.

    Returns pyld's remote-document mapping (``contextUrl``, ``documentUrl``, ``document``,
    ``contentType``). The document is tagged ``static`` so that pyld may cache the resolved
    context; that cache only ever holds our own pinned files.

    Raises:
        ContextNotAllowed: ``url`` is not a preloaded context. Nothing is fetched, ever.
    """
    document = schemas.load_context(url)
    if document is None:
        shown = url if len(url) <= _MAX_URL_IN_MESSAGE else url[: _MAX_URL_IN_MESSAGE - 1] + "…"
        raise ContextNotAllowed(f"Refusing to fetch a non-preloaded JSON-LD context: {shown}", url=shown)
    return {
        "contextUrl": None,
        "documentUrl": url,
        "document": document,
        "contentType": "application/ld+json",
        "tag": "static",
    }


# Installed at import time (case 23): any pyld call made anywhere in the process, even one that
# forgets the documentLoader option, goes through the offline loader.
jsonld.set_document_loader(load_document)


# --------------------------------------------------------------------------------------------
# expand / compact
# --------------------------------------------------------------------------------------------


def expand(document: JsonObject | list[Any]) -> list[JsonObject]:
    """Expand ``document`` with pyld, resolving contexts only from the preloaded set.

    Raises:
        ContextNotAllowed: the document (or a context it imports) names a context we do not ship.
        InvalidDocument: pyld rejected the document (invalid JSON-LD, protected-term redefinition,
            context overflow, nesting too deep, ...).
    """
    try:
        expanded = jsonld.expand(document, {"documentLoader": load_document})
    except Exception as error:  # pyld raises JsonLdError and, on deep input, RecursionError
        raise _translate(error) from error
    if not isinstance(expanded, list):
        raise InvalidDocument("JSON-LD expansion did not produce a list")
    return expanded


def compact(document: JsonObject | list[Any], context: str | JsonObject | list[Any]) -> JsonObject:
    """Compact ``document`` against ``context`` with pyld, resolving contexts only from the preloaded set.

    ``context`` is what would go under ``@context`` (an IRI such as
    ``"https://www.w3.org/ns/activitystreams"``, an inline object, or a list of those); a
    document of the form ``{"@context": ...}`` is accepted as well. Reading only the compacted
    output is model (b) of ``docs/security.md`` case 21.

    Raises:
        ContextNotAllowed: the document or ``context`` names a context we do not ship.
        InvalidDocument: pyld rejected the document.
    """
    try:
        compacted = jsonld.compact(document, context, {"documentLoader": load_document})
    except Exception as error:
        raise _translate(error) from error
    if not isinstance(compacted, dict):
        raise InvalidDocument("JSON-LD compaction did not produce an object")
    return compacted


def _translate(error: BaseException) -> Exception:
    # pyld wraps loader exceptions (sometimes twice) in JsonLdError; the refusal is the cause.
    for link in _causes(error):
        if isinstance(link, ContextNotAllowed):
            return ContextNotAllowed(link.detail, **link.context)
    if isinstance(error, RecursionError):
        return InvalidDocument("JSON-LD processing failed: the document is nested too deeply")
    message = str(error.args[0]) if error.args else type(error).__name__
    return InvalidDocument(f"JSON-LD processing failed: {message[:200]}")


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (current.__cause__, current.__context__):
            if nxt is not None:
                pending.append(nxt)
        details = getattr(current, "details", None)
        if isinstance(details, dict) and isinstance(details.get("cause"), BaseException):
            pending.append(details["cause"])


# --------------------------------------------------------------------------------------------
# Static context analysis
# --------------------------------------------------------------------------------------------


class _Unsafe(Exception):
    """Internal signal: the document's contexts cannot be trusted for plain-JSON reading."""


@dataclass(frozen=True, slots=True)
class _Term:
    """What a context says about one term, reduced to what the safety checks compare."""

    iri: str | None
    type: str | None = None
    container: tuple[str, ...] = ()
    reverse: bool = False
    scoped: bool = False
    inline: bool = False

    def same_meaning(self, pinned: _Term) -> bool:
        # The coercion (@type) may differ: Mastodon restates "Public": "as:Public" without the
        # @id coercion, which does not change what a plain-JSON reader or an LD reader sees as
        # the property's IRI.
        return (
            self.iri == pinned.iri
            and self.container == pinned.container
            and self.reverse == pinned.reverse
            and (not self.scoped or pinned.scoped)
        )


_Active = dict[str, _Term]


@cache
def _preloaded_context_value(iri: str) -> Any:
    document = schemas.load_context(iri)
    if document is None:
        return None
    return document.get("@context", {})


def _resolve_iri(value: str, local: Mapping[str, Any], active: _Active, depth: int = 0) -> str:
    """Expand a compact IRI (``as:actor``) using the context being processed, then the active one."""
    if value.startswith("@") or ":" not in value or depth > 5:
        return value
    prefix, suffix = value.split(":", 1)
    if suffix.startswith("//"):
        return value  # already absolute
    if prefix in local:
        definition = local[prefix]
        target = definition.get("@id") if isinstance(definition, dict) else definition
        if isinstance(target, str):
            return _resolve_iri(target, local, active, depth + 1) + suffix
    known = active.get(prefix)
    if known is not None and known.iri is not None:
        return known.iri + suffix
    return value


def _term_from_definition(
    term: str, definition: Any, local: Mapping[str, Any], active: _Active, *, inline: bool
) -> _Term:
    if definition is None:
        return _Term(iri=None, inline=inline)
    if isinstance(definition, str):
        return _Term(iri=_resolve_iri(definition, local, active), inline=inline)
    if not isinstance(definition, dict):
        raise _Unsafe(f"term {term!r} has an invalid definition")
    reverse = "@reverse" in definition
    raw_iri = definition.get("@reverse") if reverse else definition.get("@id", term)
    iri = _resolve_iri(raw_iri, local, active) if isinstance(raw_iri, str) else None
    raw_type = definition.get("@type")
    return _Term(
        iri=iri,
        type=_resolve_iri(raw_type, local, active) if isinstance(raw_type, str) else None,
        container=_containers(definition),
        reverse=reverse,
        scoped="@context" in definition,
        inline=inline,
    )


def _containers(definition: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``@container`` of a term definition as a sorted tuple (ignoring malformed entries)."""
    container = definition.get("@container", ())
    if isinstance(container, str):
        return (container,)
    if isinstance(container, list):
        return tuple(sorted(item for item in container if isinstance(item, str)))
    return ()


def _apply_context(value: Any, active: _Active, *, inline: bool, nesting: int = 0) -> _Active:
    """Return the active term mapping after processing a ``@context`` value, as JSON-LD would.

    Raises ``_Unsafe`` on anything model (a) cannot vouch for: unknown context IRIs, ``null``
    resets, ``@base``, keyword aliases other than ``id``/``type``, or an inline scoped context
    that itself redefines a protected term.
    """
    if nesting > _MAX_CONTEXT_NESTING:
        raise _Unsafe("contexts nested too deeply")
    if isinstance(value, list):
        for item in value:
            active = _apply_context(item, active, inline=inline, nesting=nesting + 1)
        return active
    if value is None:
        # A null context throws away every definition: the LD reading of everything after it
        # differs from the JSON reading.
        raise _Unsafe("null @context")
    if isinstance(value, str):
        preloaded = _preloaded_context_value(value)
        if preloaded is None:
            raise _Unsafe(f"context {value!r} is not preloaded")
        return _apply_context(preloaded, active, inline=False, nesting=nesting + 1)
    if not isinstance(value, dict):
        raise _Unsafe("@context entries must be IRIs or objects")

    imported = value.get("@import")
    if imported is not None:
        if not isinstance(imported, str):
            raise _Unsafe("@import must name a preloaded context")
        active = _apply_context(imported, active, inline=inline, nesting=nesting + 1)

    updated = dict(active)
    for key, definition in value.items():
        if key.startswith("@"):
            if inline and key not in _ALLOWED_CONTEXT_KEYWORDS:
                raise _Unsafe(f"inline context uses {key}")
            continue
        term = _term_from_definition(key, definition, value, active, inline=inline)
        if inline:
            if (
                term.iri is not None
                and term.iri.startswith("@")
                and (key, term.iri) not in _KEYWORD_ALIASES_ALLOWED
            ):
                raise _Unsafe(f"inline context aliases the keyword {term.iri} as {key!r}")
            if isinstance(definition, dict) and "@context" in definition:
                # A scoped context applies to values of this property, or to nodes of this type:
                # it must not redefine protected terms either.
                _check_protected(
                    _apply_context(definition["@context"], updated, inline=True, nesting=nesting + 1)
                )
        updated[key] = term
    return updated


@cache
def _pinned_terms() -> dict[str, _Term]:
    active: _Active = {}
    for iri in _PINNED_CONTEXTS:
        active = _apply_context(iri, active, inline=False)
    return {name: active[name] for name in _PROTECTED_PROPERTIES | _as_type_names() if name in active}


@cache
def _as_type_names() -> frozenset[str]:
    context = _preloaded_context_value(_PINNED_CONTEXTS[0])
    return frozenset(name for name in context if name[:1].isupper())


@cache
def _pinned_iris() -> dict[str, str]:
    return {term.iri: name for name, term in _pinned_terms().items() if term.iri is not None}


def _check_protected(active: _Active) -> None:
    pinned = _pinned_terms()
    pinned_iris = _pinned_iris()
    for name, term in active.items():
        expected = pinned.get(name)
        if expected is not None:
            if term.iri is None and term.inline:
                # {"actor": null}: an LD reader drops the property a JSON reader acts on.
                raise _Unsafe(f"{name!r} is undefined by an inline context")
            if term.iri is not None and not term.same_meaning(expected):
                raise _Unsafe(f"{name!r} is redefined as {term.iri!r}")
        elif term.inline and term.iri in pinned_iris:
            # e.g. {"sender": "as:actor"}: a second name for a core property that plain-JSON
            # readers would not look at but an LD reader would merge into the property.
            raise _Unsafe(f"{name!r} aliases the core term {pinned_iris[term.iri]!r}")


def _walk(document: Any) -> Iterator[dict[str, Any]]:
    """Yield every JSON object in ``document`` except context definitions, iteratively (no recursion)."""
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(child for key, child in node.items() if key != "@context")
        elif isinstance(node, list):
            stack.extend(node)


def uses_only_known_contexts(document: Any) -> bool:
    """Tell whether ``document`` may be read as plain JSON (the fast path, case 21 model (a)).

    True when, for every ``@context`` found anywhere in the document (top level and embedded
    objects, following JSON-LD scoping):

    - every context IRI is one of :func:`schemas.context_iris` (nothing would be fetched);
    - no context, inline or preloaded, gives one of the protected terms (:data:`PROTECTED_TERMS`:
      ActivityStreams type names, addressing, authorship, collection paging, ``publicKey``/``owner``/
      ``publicKeyPem``, ``assertionMethod``) a meaning other than the one in the pinned
      ActivityStreams, security v1 and DID v1 contexts. Restating the same IRI is fine (Mastodon
      restates ``alsoKnownAs``; ordering matters: a preloaded context that overrides them, such as
      identity v1 placed *after* ActivityStreams, makes the answer False);
    - no inline context aliases a keyword (``"kind": "@type"``, ``"graph": "@graph"``) other
      than the standard ``id``/``type``, defines a second name for a protected property, uses
      ``@base``, or resets the context with ``null``.

    A document with no ``@context`` at all (Lemmy's test assets, for example) is trivially True.
    The check is static and cheap: no pyld call, no I/O. It does not look for ``@graph`` and
    friends; see :func:`has_forbidden_keywords`.
    """
    try:
        _check_document_contexts(document)
    except (_Unsafe, RecursionError, ValueError):
        # RecursionError/ValueError: a context too deep or too odd to serialise; not plain JSON.
        return False
    return True


def _check_document_contexts(document: Any) -> None:
    # Active mappings follow the document's nesting: an embedded object inherits its parent's
    # context and may extend it with its own @context.
    empty: _Active = {}
    stack: list[tuple[Any, _Active]] = [(document, empty)]
    while stack:
        node, active = stack.pop()
        if isinstance(node, dict):
            if "@context" in node:
                if active is empty:
                    active = _top_level_outcome(_canonical(node["@context"]))
                else:
                    active = _apply_context(node["@context"], active, inline=True)
                    _check_protected(active)
            stack.extend((child, active) for key, child in node.items() if key != "@context")
        elif isinstance(node, list):
            stack.extend((child, active) for child in node)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=256)
def _top_level_cached(canonical_context: str) -> _Active | None:
    # Peers send the same few @context values over and over (Mastodon builds one per document
    # kind), so the verdict on a top-level context is cached; this keeps the fast path fast.
    # The cached mapping is shared: _apply_context copies before extending it.
    try:
        active = _apply_context(json.loads(canonical_context), {}, inline=True)
        _check_protected(active)
    except _Unsafe:
        return None
    return active


def _top_level_outcome(canonical_context: str) -> _Active:
    active = _top_level_cached(canonical_context)
    if active is None:
        raise _Unsafe("top-level @context is unsafe")
    return active


def screen_top_level_context(context: Any, nodes: list[dict[str, Any]]) -> tuple[bool, bool] | None:
    """:func:`has_forbidden_keywords` and :func:`uses_only_known_contexts` at once, for a document
    whose only ``@context`` is the top-level one, ``context``; ``nodes`` are the document's
    objects (:func:`objects_of`). ``None`` when ``context`` cannot be serialised (the caller
    then asks the two functions).

    Peers send the same few top-level contexts over and over, so what each check makes of one
    (its dangerous terms, its verdict) is computed once per distinct context; what remains per
    document is a scan of its keys. With no other ``@context`` the two functions reduce to
    exactly this: the dangerous terms come from that context alone, and it is the only one
    ``uses_only_known_contexts`` applies (``tests/schemas/test_jsonld_offline.py`` compares them).
    """
    try:
        canonical = _canonical(context)
    except (RecursionError, ValueError):
        return None
    suspicious = _suspicious_terms_cached(canonical)
    forbidden = suspicious is None or any(not suspicious.isdisjoint(node) for node in nodes)
    try:
        plain_json = _top_level_cached(canonical) is not None
    except (RecursionError, ValueError):  # as uses_only_known_contexts: not plain JSON
        plain_json = False
    return forbidden, plain_json


def has_keyword_keys(nodes: list[dict[str, Any]]) -> bool:
    """Does one of ``nodes`` (:func:`objects_of`) use ``@graph``, ``@included`` or ``@reverse`` as a key?"""
    return any(not FORBIDDEN_KEYWORDS.isdisjoint(node) for node in nodes)


def objects_of(document: Any) -> list[dict[str, Any]]:
    """Every JSON object of ``document`` except context definitions, the document itself first."""
    return list(_walk(document))


@lru_cache(maxsize=256)
def _suspicious_terms_cached(canonical_context: str) -> frozenset[str] | None:
    # None: the context could hide an alias (an unknown one, or nested absurdly deep).
    suspicious = set(FORBIDDEN_KEYWORDS)
    if not _collect_suspicious_terms(json.loads(canonical_context), suspicious, nesting=0):
        return None
    return frozenset(suspicious)


def has_forbidden_keywords(document: Any) -> bool:
    """Tell whether ``document`` uses ``@graph``, ``@included`` or ``@reverse``, directly or disguised.

    These restructure a signed graph without changing its canonical N-Quads, so a Linked Data
    signature still verifies while a plain-JSON reader sees a different activity
    (``docs/security.md`` case 20, Mastodon's ``UNSUPPORTED_JSONLD_KEYWORDS``, Fedify
    GHSA-9rfg-v8g9-9367). When this returns True, ignore any LD signature on the document.

    Detected, anywhere in the document (any depth, any scope):

    - the keywords themselves used as keys;
    - keys that an inline context defines as an alias of one of them, as a reverse property
      (``{"@reverse": ...}``) or with a ``@graph`` container.

    The preloaded contexts alias none of these keywords (``tests/schemas`` checks it); their only
    graph container is ``proof`` from Data Integrity, which is allowed because FEP-8b32 proofs are
    verified on the document with ``proof`` removed. A document that names a context we do not
    ship is reported as True: that context could hide an alias, and such a document cannot carry
    a usable LD signature anyway (case 23).
    """
    suspicious = set(FORBIDDEN_KEYWORDS)
    nodes = list(_walk(document))
    for node in nodes:
        if "@context" in node and not _collect_suspicious_terms(node["@context"], suspicious, nesting=0):
            return True  # an unknown context (or one nested absurdly deep) could hide an alias
    return any(key in suspicious for node in nodes for key in node)


def _collect_suspicious_terms(value: Any, into: set[str], *, nesting: int) -> bool:
    """Add to ``into`` every term an inline context makes dangerous; False if a context is unknown."""
    if nesting > _MAX_CONTEXT_NESTING:
        return False
    if isinstance(value, list):
        return all(_collect_suspicious_terms(item, into, nesting=nesting + 1) for item in value)
    if isinstance(value, str):
        return value in schemas.context_iris()
    if not isinstance(value, dict):
        return value is None
    imported = value.get("@import")
    if imported is not None and not _collect_suspicious_terms(imported, into, nesting=nesting + 1):
        return False
    for term, definition in value.items():
        if term.startswith("@"):
            continue
        target = definition.get("@id") if isinstance(definition, dict) else definition
        if isinstance(target, str) and target in FORBIDDEN_KEYWORDS:
            into.add(term)
        if isinstance(definition, dict):
            if "@reverse" in definition or "@graph" in _containers(definition):
                into.add(term)
            scoped = definition.get("@context")
            if scoped is not None and not _collect_suspicious_terms(scoped, into, nesting=nesting + 1):
                return False
    return True
