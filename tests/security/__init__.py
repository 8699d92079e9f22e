"""Security regression suite: every attack of the catalogue in docs/security.md refused."""
