"""Entraide's data files: pinned JSON-LD contexts and JSON Schemas, plus a small offline loader.

This package is data. Its only code is this loader, written with the standard library alone
(``importlib.resources`` and ``json``) so that every layer may import it (see the import-linter
contract "schemas is data plus a stdlib loader" in ``pyproject.toml``).

Contexts
    ``contexts/index.json`` maps every context IRI we accept (including the ``http://`` and
    ``.jsonld`` spellings that peers really send) to a pinned file in ``contexts/``.
    :func:`load_context` answers only for those IRIs; nothing is ever fetched
    (``docs/security.md`` case 23). Provenance of each file is in ``contexts/README.md``.

Schemas
    Every ``*.schema.json`` file below this package is a JSON Schema (Draft 2020-12). A schema is
    named by its path relative to the package without the ``.schema.json`` suffix, for example
    ``"activitystreams/actor"`` or ``"entraide/group"``.

Nothing is read at import time. Files are read on first use and cached; the public functions
return deep copies, so callers may mutate what they get without corrupting the cache.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

__all__ = [
    "SCHEMA_SUFFIX",
    "context_iris",
    "load_context",
    "load_schema",
    "schema_names",
]

SCHEMA_SUFFIX = ".schema.json"
"""File-name suffix that marks a JSON Schema inside this package."""

_CONTEXT_INDEX = "index.json"


def _root() -> Traversable:
    return resources.files(__name__)


def _read_json_object(node: Traversable) -> dict[str, Any]:
    data = json.loads(node.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{node.name}: expected a JSON object at the top level")
    return data


@cache
def _context_index() -> dict[str, str]:
    raw = _read_json_object(_root() / "contexts" / _CONTEXT_INDEX)
    index: dict[str, str] = {}
    for iri, filename in raw.items():
        if not isinstance(filename, str):
            raise ValueError(f"contexts/{_CONTEXT_INDEX}: {iri!r} must map to a file name")
        index[iri] = filename
    return index


@cache
def _context_document(filename: str) -> dict[str, Any]:
    return _read_json_object(_root() / "contexts" / filename)


def context_iris() -> frozenset[str]:
    """Return every JSON-LD context IRI that has a pinned local copy.

    These are the only IRIs :func:`load_context` answers for, and so the only remote contexts
    the JSON-LD loader in ``federation.jsonld`` will ever resolve.
    """
    return frozenset(_context_index())


def load_context(iri: str) -> dict[str, Any] | None:
    """Return the pinned context document for ``iri``, or ``None`` if it is not preloaded.

    The lookup is exact: IRIs are not normalised (no case folding, no fragment stripping), so
    that what is accepted is exactly what ``contexts/index.json`` lists. The result is the whole
    document (a JSON object with an ``@context`` member) and is a fresh copy on every call.
    """
    filename = _context_index().get(iri)
    if filename is None:
        return None
    return copy.deepcopy(_context_document(filename))


def _walk_schemas(node: Traversable, prefix: str) -> list[str]:
    names: list[str] = []
    for child in node.iterdir():
        if child.is_dir():
            if not child.name.startswith(("_", ".")):
                names.extend(_walk_schemas(child, f"{prefix}{child.name}/"))
        elif child.name.endswith(SCHEMA_SUFFIX):
            names.append(prefix + child.name[: -len(SCHEMA_SUFFIX)])
    return names


@cache
def _schema_names() -> tuple[str, ...]:
    return tuple(sorted(_walk_schemas(_root(), "")))


def schema_names() -> tuple[str, ...]:
    """Return the names of every JSON Schema shipped in this package, sorted.

    A name is the schema's path relative to the package without ``.schema.json``, for example
    ``"activitystreams/actor"``.
    """
    return _schema_names()


@cache
def _schema(name: str) -> dict[str, Any]:
    if name not in _schema_names():
        raise KeyError(f"unknown schema {name!r}")
    *folders, stem = name.split("/")
    node = _root()
    for folder in folders:
        node = node / folder
    return _read_json_object(node / (stem + SCHEMA_SUFFIX))


def load_schema(name: str) -> dict[str, Any]:
    """Return the JSON Schema called ``name`` (see :func:`schema_names`) as a fresh copy.

    Raises:
        KeyError: no schema of that name is shipped.
    """
    return copy.deepcopy(_schema(name))
