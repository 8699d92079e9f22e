"""Uploaded files: storage backends and attachment records."""
