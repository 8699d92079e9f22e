"""Actors: our local actors and their keys, remote actors we store and fetch, the key resolver."""
