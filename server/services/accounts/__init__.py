"""Member accounts: password sessions, the GDPR archive, and erasure."""
