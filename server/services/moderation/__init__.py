"""Moderation: reports from members and peers and what moderators do about them (``reports.py``),
blocks (``blocks.py``), shared block lists (``blocklists.py``) and the node's federation policy."""
