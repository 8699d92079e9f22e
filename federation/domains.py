"""The unit a peer's budgets are counted in: its registrable domain, never ``host:port``.

Keying rate limits and key-fetch budgets by ``host:port`` gives one address a fresh bucket on
every port, and one domain a fresh bucket on every subdomain (security case 57). The registrable
domain ("eTLD+1") comes from the Public Suffix List bundled with ``tldextract`` (never fetched:
no network, no cache file); private suffixes count (``alice.github.io`` and ``bob.github.io`` are
two owners). An IP literal, or a name under no known suffix (``peer.example``, ``localhost``), is
its own unit, without the port.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import tldextract

_EXTRACT: Final = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


def _without_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        return host[: host.find("]") + 1] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isascii() and port.isdigit() and ":" not in name else host


@lru_cache(maxsize=4096)
def registrable_domain(host: str) -> str:
    """``social.example.org:8443`` → ``example.org``; ``127.0.0.1:8001`` → ``127.0.0.1``.

    ``host`` is a canonical host (``federation.netguard.canonical_host``: lower case, punycode,
    no trailing dot), with or without a port.
    """
    bare = _without_port(host)
    if bare.startswith("["):
        return bare
    return _EXTRACT.extract_str(bare).top_domain_under_public_suffix or bare
