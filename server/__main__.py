"""``python -m server`` is the ``entraide`` command."""

from server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
