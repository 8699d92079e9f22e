"""Security regression suite: every attack in shared/security.md refused (see docs/security.md)."""
