"""Use cases, free of aiohttp: each takes a session (or session factory) and typed inputs."""
