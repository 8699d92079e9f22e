"""Entraide's ActivityPub protocol library.

Vocabulary (reading peers' JSON, rendering ours), JSON-LD without the network, keys, HTTP
signatures and integrity proofs, inbox checks and routing, delivery planning, fetching and
WebFinger lookups, NodeInfo, and the peer policy and SSRF guard. It has no web application
and no database: storage, time and network come in through parameters and the ports in
:mod:`federation.ports`. Feeds (Atom, RSS, JSON Feed) are not here: they are rendered by
``server/services/reading/feeds.py`` from stored rows.

The public surface is the modules listed in ``__all__`` (``from federation import inbox``);
this package imports none of them itself, so ``import federation.fetch`` loads neither aiohttp
nor the other modules. ``federation.memory`` (in-memory ports, for tests) and names starting
with ``_`` are not part of it. ``docs/architecture.md`` places the library among the layers.

Entry points, by what a caller does:

- receive: :mod:`.inbox` (checks and routing), :mod:`.signatures`, :mod:`.vocab` (``parse``);
- send: :mod:`.delivery` (plan and outcome), :mod:`.audience` (addressing), :mod:`.retry`,
  :mod:`.circuit`, :mod:`.transport` (the only HTTP client), :mod:`.signing_pool` (signatures
  made in child processes);
- read peers: :mod:`.fetch`, :mod:`.lookup`, :mod:`.actors_remote`, :mod:`.webfinger`;
- publish: :mod:`.vocab` (``actors``, ``entraide``, ``context``), :mod:`.collections`,
  :mod:`.nodeinfo`, :mod:`.integrity`, :mod:`.uris` (our IRIs);
- shared values: :mod:`.types`, :mod:`.errors`, :mod:`.iri`, :mod:`.limits`, :mod:`.keys`,
  :mod:`.http`, :mod:`.ports`, :mod:`.policy`, :mod:`.netguard`, :mod:`.domains`,
  :mod:`.validation`, :mod:`.jsonld`, :mod:`.compat`.
"""

__all__ = [
    "actors_remote",
    "audience",
    "circuit",
    "collections",
    "compat",
    "delivery",
    "domains",
    "errors",
    "fetch",
    "http",
    "inbox",
    "integrity",
    "iri",
    "jsonld",
    "keys",
    "limits",
    "lookup",
    "netguard",
    "nodeinfo",
    "policy",
    "ports",
    "retry",
    "signatures",
    "signing_pool",
    "transport",
    "types",
    "uris",
    "validation",
    "vocab",
    "webfinger",
]
