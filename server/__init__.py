"""Entraide's aiohttp application, storage, job queue, worker and command line."""

__version__ = "0.1.0"
