"""Incoming federation, processing half: the group-commit writer, the worker that rebuilds, the handlers."""
