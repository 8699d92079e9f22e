"""Benchmarks: run by ``bash deploy/scripts/bench.sh``, never by pytest (see README.md here)."""
