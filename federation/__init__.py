"""Entraide's ActivityPub protocol library.

Vocabulary, JSON-LD, keys, HTTP signatures, inbox checks, delivery planning, WebFinger,
NodeInfo and feeds rendering. It has no web application and no database: storage, time and
network come in through parameters and the ports in :mod:`federation.ports`.
"""
