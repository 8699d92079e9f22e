"""Moderation: reports from members and peers, and what moderators do about them (``reports.py``)."""
