"""JSON Schema validation of federation documents against the schemas shipped in :mod:`schemas`.

Two families of schemas live in ``schemas/`` (see ``schemas/README.md``):

- ``activitystreams/*``: *lenient* shapes for what peers send us (actor, activity, object,
  collection, collection page, key, WebFinger, NodeInfo). They pin only what we rely on.
- ``entraide/*``: *strict* shapes for what we publish (our Group, Person and Application actors and
  our ordered collections). They are the contract our renderers are tested against.

Offline by construction: the ``referencing`` registry is built from the files in ``schemas/``
only and has no retrieval function, so a ``$ref`` to anything else raises
``referencing.exceptions.Unresolvable`` instead of reaching the network (jsonschema's default
registry would fetch remote ``$ref`` s).

Formats. jsonschema's own ``uri`` checker needs the ``rfc3987`` package, which we do not ship, and
its ``date-time`` checker needs ``rfc3339-validator``. Rather than depend on which optional
packages happen to be installed, we use a :class:`jsonschema.FormatChecker` that knows exactly two
formats, implemented here with the standard library:

- ``uri``: an absolute URI of any scheme (``acct:``, ``https:``, ...), no whitespace;
- ``date-time``: RFC 3339, parsed with :meth:`datetime.datetime.fromisoformat` and required to
  carry a time zone.

Where an IRI must be http(s) (ids, inboxes, keys), the schemas use a ``pattern`` instead
(``activitystreams/common.schema.json#/$defs/httpIri``), which any validator enforces, and
:func:`validate` words that failure as "is not an absolute http(s) IRI".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import schemas
from federation.errors import InvalidDocument

__all__ = ["FORMAT_CHECKER", "json_path", "registry", "validate", "validator_for"]

_MAX_MESSAGE_CHARS = 300
# RFC 3986 scheme, then anything without whitespace. Deliberately simple: the schemas use it only
# where any scheme is legitimate (WebFinger subject and aliases).
_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")

FORMAT_CHECKER = FormatChecker(formats=())
"""The format checker used by :func:`validate`: only ``uri`` and ``date-time`` (see module doc)."""


@FORMAT_CHECKER.checks("uri")
def _is_absolute_uri(instance: object) -> bool:
    if not isinstance(instance, str):
        return True  # formats apply to strings only
    return _ABSOLUTE_URI.match(instance) is not None


@FORMAT_CHECKER.checks("date-time")
def _is_rfc3339_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    # fromisoformat accepts more than RFC 3339 (e.g. a space separator, no seconds); the "T" and
    # the seconds are checked here, the time zone below.
    if not re.match(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}", instance):
        return False
    try:
        parsed = datetime.fromisoformat(instance)
        # Past datetime.max once in UTC (9999-12-31T23:59:59-14:00) is no usable date either.
        return parsed.tzinfo is not None and parsed.astimezone(UTC) is not None
    except (ValueError, OverflowError):
        return False


@cache
def registry() -> Registry[Any]:
    """Return the registry of every schema in :mod:`schemas`, keyed by its ``$id``.

    The registry cannot retrieve anything: looking up a URI that is not one of our ``$id`` s
    raises ``referencing.exceptions.Unresolvable`` during validation.

    Raises:
        ValueError: a schema has no ``$id``, or two schemas share one.
    """
    resources: list[tuple[str, Resource[Any]]] = []
    seen: set[str] = set()
    for name in schemas.schema_names():
        contents = schemas.load_schema(name)
        schema_id = contents.get("$id")
        if not isinstance(schema_id, str):
            raise ValueError(f"schema {name!r} has no $id")
        if schema_id in seen:
            raise ValueError(f"schema {name!r} reuses the $id {schema_id!r}")
        seen.add(schema_id)
        resources.append((schema_id, DRAFT202012.create_resource(contents)))
    return Registry().with_resources(resources)


@cache
def validator_for(schema_name: str) -> Validator:
    """Return the compiled (cached) validator for the schema called ``schema_name``.

    Raises:
        KeyError: no such schema in :mod:`schemas`.
        jsonschema.exceptions.SchemaError: the schema itself is not valid Draft 2020-12.
    """
    schema = schemas.load_schema(schema_name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry(), format_checker=FORMAT_CHECKER)


def validate(document: Any, schema_name: str) -> None:
    """Check ``document`` against the schema called ``schema_name`` (e.g. ``"activitystreams/actor"``).

    Returns nothing when the document is valid. Otherwise raises :class:`InvalidDocument` whose
    detail names the JSON path of the most relevant error (jsonschema's ``best_match``) followed by
    the reason, for example ``publicKey.owner: 'x' is not an absolute http(s) IRI`` or
    ``<root>: 'inbox' is a required property``. The detail is capped at a few hundred
    characters, because it may quote attacker-controlled values and ends up in logs and problem
    responses. The exception's ``context`` carries ``schema``, ``path`` and ``keyword``.

    Raises:
        InvalidDocument: the document does not match the schema (or is too deeply nested to check).
        KeyError: no such schema.
        referencing.exceptions.Unresolvable: a schema refers to something outside ``schemas/``
            (a bug in our schemas, never caused by the document).
    """
    validator = validator_for(schema_name)
    try:
        error = best_match(validator.iter_errors(document))
    except RecursionError:
        # The inbox bounds nesting before validation (security.md case 28); this is the backstop.
        raise InvalidDocument("<root>: the document is nested too deeply", schema=schema_name) from None
    if error is None:
        return
    path = json_path(error.absolute_path)
    detail = f"{path}: {_reason(error)}"
    if len(detail) > _MAX_MESSAGE_CHARS:
        detail = detail[: _MAX_MESSAGE_CHARS - 1] + "…"
    raise InvalidDocument(detail, schema=schema_name, path=path, keyword=str(error.validator))


def json_path(parts: Iterable[str | int]) -> str:
    """Render a jsonschema error path as ``a.b[0].c`` (``<root>`` for the document itself)."""
    rendered = ""
    for part in parts:
        if isinstance(part, int):
            rendered += f"[{part}]"
        else:
            rendered += f".{part}" if rendered else str(part)
    return rendered or "<root>"


def _reason(error: ValidationError) -> str:
    # A pattern failure reads "'x' does not match '^https?://…'", which tells a peer's developer
    # little; schemas that describe their pattern get that description instead.
    if error.validator == "pattern" and isinstance(error.schema, dict):
        description = error.schema.get("description")
        if isinstance(description, str):
            return f"{_short_repr(error.instance)} is not {description}"
    return error.message


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"
