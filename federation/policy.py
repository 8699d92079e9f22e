"""Which peers this node federates with: an open network with a blocklist, or a closed one.

Pure decisions on canonical hosts (:func:`federation.netguard.canonical_host`). The inbox asks
it about the signer, the actor and every object host; the transport asks it about every fetch
target and every redirect hop (security.md cases 13, 47).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from .errors import PeerNotAllowed
from .iri import host_of
from .netguard import canonical_host, parse_host_literal, split_host_port

PeerMode = Literal["open", "allowlist"]
"""``open``: everyone except the blocklist. ``allowlist``: a closed network of listed hosts."""

_WILDCARD = "*."


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One canonical policy entry: a host name, an optional port, and whether it is a wildcard.

    ``port=None`` matches every port of the host. ``subdomains_only`` (an entry written
    ``*.example.org``) matches strict subdomains of ``host`` and not ``host`` itself.
    """

    host: str
    port: int | None = None
    subdomains_only: bool = False

    @classmethod
    def parse(cls, entry: str) -> HostPattern:
        """Read an entry such as ``peer.example``, ``peer.example:8443`` or ``*.univ.example``.

        Raises:
            ValueError: the entry is not a valid host (see :func:`canonical_host`), names a
                default port (80 or 443), or uses a wildcard on an IP address or anywhere but
                the leftmost label.
        """
        text = entry.strip()
        wildcard = text.startswith(_WILDCARD)
        if wildcard:
            text = text[len(_WILDCARD) :]
        hostname, port = split_host_port(canonical_host(text))
        if port in (80, 443):
            # Transports canonicalise with the scheme and drop default ports, so such an entry
            # could never match; refuse it rather than silently allow nothing.
            raise ValueError(f"write the host without its default port: {entry!r}")
        if wildcard and parse_host_literal(hostname) is not None:
            raise ValueError(f"wildcards apply to domain names, not addresses: {entry!r}")
        return cls(host=hostname, port=port, subdomains_only=wildcard)

    def matches(self, hostname: str, port: int | None, *, include_subdomains: bool) -> bool:
        """Does ``hostname[:port]`` (canonical, IPv6 without brackets) fall under this entry?

        ``include_subdomains`` makes a plain entry also cover its subdomains (blocklists).
        """
        if self.port is not None and port != self.port:
            return False
        if hostname == self.host:
            return not self.subdomains_only
        if self.subdomains_only or include_subdomains:
            # IP literals have no subdomains: "1.1.1.1" must not match "9.1.1.1.1"-style text.
            return hostname.endswith("." + self.host) and parse_host_literal(self.host) is None
        return False


def _patterns(entries: Iterable[str]) -> frozenset[HostPattern]:
    if isinstance(entries, str):
        raise TypeError("pass an iterable of hosts, not a single string")
    return frozenset(HostPattern.parse(entry) for entry in entries)


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """The federation policy: open with a blocklist, or a closed allowlist (case 47).

    * ``mode="open"``: every host is allowed except blocked ones. A blocked domain also blocks
      all of its subdomains (``evil.example`` blocks ``a.b.evil.example``).
    * ``mode="allowlist"``: only listed hosts are allowed. Entries match the exact canonical
      host; subdomains are allowed only for an entry written ``*.example.org`` (which matches
      subdomains, not ``example.org`` itself: list both if both are wanted). The blocklist
      still applies on top, so ``*.univ.example`` plus a blocked ``spam.univ.example`` works.

    An entry with a port (``peer.example:8443``) matches that port only; an entry without one
    matches every port, so a block cannot be dodged by changing the port. Entries are
    canonicalised on construction (``PEER.Example.`` is stored as ``peer.example``), and a
    malformed entry raises ``ValueError`` there, at configuration time.

    Guarantees: pure and immutable; every host the policy cannot canonicalise is refused.
    """

    mode: PeerMode = "open"
    blocked: frozenset[HostPattern] = field(default_factory=frozenset)
    allowed: frozenset[HostPattern] = field(default_factory=frozenset)
    blocked_actors: frozenset[str] = field(default_factory=frozenset)
    """Actor IRIs refused one by one (the node's actor blocks), on top of the host rules."""

    def __post_init__(self) -> None:
        if self.mode not in ("open", "allowlist"):
            raise ValueError(f"unknown peer policy mode: {self.mode!r}")
        if self.mode == "open" and self.allowed:
            raise ValueError("an open network has no allowlist; use mode='allowlist'")
        if any(p.subdomains_only for p in self.blocked):
            raise ValueError("blocklist entries already cover subdomains; write 'example.org'")

    @classmethod
    def open_network(cls, blocked: Iterable[str] = (), blocked_actors: Iterable[str] = ()) -> PeerPolicy:
        """An open network that refuses ``blocked`` domains and their subdomains.

        Raises:
            ValueError: an entry is not a valid host, or is written ``*.example.org``.
        """
        return cls(mode="open", blocked=_patterns(blocked), blocked_actors=frozenset(blocked_actors))

    @classmethod
    def closed_network(
        cls, allowed: Iterable[str], blocked: Iterable[str] = (), blocked_actors: Iterable[str] = ()
    ) -> PeerPolicy:
        """A closed network of ``allowed`` hosts (``*.example.org`` for subdomains), minus ``blocked``.

        Raises:
            ValueError: an entry is not a valid host.
        """
        return cls(
            mode="allowlist",
            allowed=_patterns(allowed),
            blocked=_patterns(blocked),
            blocked_actors=frozenset(blocked_actors),
        )

    def allows(self, host: str) -> bool:
        """True when this node may federate with ``host`` (``name`` or ``name:port``).

        The host is canonicalised again before matching (a no-op on canonical input), so a
        non-canonical spelling such as ``EVIL.example.`` cannot bypass the blocklist. A host
        that cannot be canonicalised is not allowed.
        """
        try:
            hostname, port = split_host_port(canonical_host(host))
        except ValueError:
            return False
        if any(p.matches(hostname, port, include_subdomains=True) for p in self.blocked):
            return False
        if self.mode == "open":
            return True
        return any(p.matches(hostname, port, include_subdomains=False) for p in self.allowed)

    def check(self, host: str) -> None:
        """Raise unless :meth:`allows` accepts ``host``.

        Raises:
            PeerNotAllowed: the host is blocked, not on the allowlist, or malformed. The host
                is in the error's ``context["host"]``.
        """
        if not self.allows(host):
            raise PeerNotAllowed(f"peer host not allowed: {host}", host=host)

    def allows_actor(self, actor_iri: str) -> bool:
        """True when ``actor_iri`` is not blocked one by one and its host is allowed."""
        if actor_iri in self.blocked_actors:
            return False
        try:
            host = host_of(actor_iri)
        except ValueError:
            return False
        return self.allows(host)

    def check_actor(self, actor_iri: str) -> None:
        """Raise unless :meth:`allows_actor` accepts ``actor_iri``.

        Raises:
            PeerNotAllowed: the actor is blocked, or its host is refused (``context["host"]``).
        """
        if not self.allows_actor(actor_iri):
            raise PeerNotAllowed(f"peer actor not allowed: {actor_iri}", actor=actor_iri)


class HostPolicy(Protocol):
    """What the transport, the fetcher, the inbox and the delivery planner ask a peer policy.

    :class:`PeerPolicy` is one (a fixed value); :class:`LivePolicy` is one whose value the node
    replaces when its administrators change blocks, so that every holder sees the change at once.
    """

    def allows(self, host: str) -> bool: ...

    def check(self, host: str) -> None: ...

    def allows_actor(self, actor_iri: str) -> bool: ...

    def check_actor(self, actor_iri: str) -> None: ...


class LivePolicy:
    """A replaceable :class:`PeerPolicy`: one object shared by every component of a process.

    The server builds it from its configuration, then replaces the value (:meth:`replace`) with
    the snapshot of its database blocks whenever they change (docs/decisions.md 62). Every read
    sees one whole snapshot: the reference is swapped, never the value mutated.

    Answers about hosts are remembered until the next :meth:`replace` (at most
    :data:`MAX_REMEMBERED_HOSTS`, then forgotten at once): an inbox POST asks about the same
    few hosts several times, and canonicalising a host each time was a measurable part of it.
    """

    __slots__ = ("__weakref__", "_answers", "_current", "version")

    def __init__(self, initial: PeerPolicy, version: int = 0) -> None:
        self._current = initial
        self._answers: dict[str, bool] = {}
        self.version = version

    @property
    def current(self) -> PeerPolicy:
        return self._current

    def replace(self, policy: PeerPolicy, version: int) -> None:
        """Use ``policy`` from now on; ``version`` is the snapshot's (callers skip same versions)."""
        self._current = policy
        self._answers = {}
        self.version = version

    def allows(self, host: str) -> bool:
        answer = self._answers.get(host)
        if answer is None:
            answer = self._current.allows(host)
            if len(self._answers) >= MAX_REMEMBERED_HOSTS:
                self._answers = {}
            self._answers[host] = answer
        return answer

    def check(self, host: str) -> None:
        if not self.allows(host):
            self._current.check(host)  # raises PeerNotAllowed, as the policy itself words it

    def allows_actor(self, actor_iri: str) -> bool:
        if actor_iri in self._current.blocked_actors:
            return False
        try:
            host = host_of(actor_iri)
        except ValueError:
            return False
        return self.allows(host)

    def check_actor(self, actor_iri: str) -> None:
        if not self.allows_actor(actor_iri):
            self._current.check_actor(actor_iri)  # raises PeerNotAllowed


MAX_REMEMBERED_HOSTS: Final = 4096
"""Hosts whose answer :class:`LivePolicy` keeps between two replacements of its policy."""


__all__ = ["HostPattern", "HostPolicy", "LivePolicy", "PeerMode", "PeerPolicy"]
