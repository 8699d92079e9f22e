"""Hand-written ActivityStreams vocabulary: frozen values and their JSON renderings.

- :mod:`.parse` reads peers' JSON into the values of :mod:`.activities` and :mod:`.objects`
  (remote actors through :func:`federation.actors_remote.read_actor`);
- :mod:`.actors`, :mod:`.entraide` and :mod:`.context` render our own documents.
"""

__all__ = ["activities", "actors", "context", "entraide", "objects", "parse"]
