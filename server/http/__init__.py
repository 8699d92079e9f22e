"""HTTP handlers: thin adapters from aiohttp requests to services and back."""
