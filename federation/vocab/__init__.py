"""Hand-written ActivityStreams vocabulary: frozen values and their JSON renderings.

- :mod:`.parse` reads peers' JSON into the values of :mod:`.activities` and :mod:`.objects`
  (remote actors through :func:`federation.actors_remote.read_actor`);
- :mod:`.actors`, :mod:`.entraide`, :mod:`.events` and :mod:`.context` render our own documents
  (:mod:`.events` also reads the event terms of peers' ``Event`` objects).
"""

__all__ = ["activities", "actors", "context", "entraide", "events", "objects", "parse"]
