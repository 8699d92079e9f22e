"""Moderation: reports, blocks and the node's federation policy."""
