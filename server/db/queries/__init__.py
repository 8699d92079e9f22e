"""Query functions by aggregate; each takes the session first. Handlers never build SQL."""
