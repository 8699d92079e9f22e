"""Content: our publications (local), what peers send (remote), the state served now, votes,
co-signing, likes."""
