#!/usr/bin/env bash
# Install Entraide with its test tools and run the whole test suite on SQLite and PostgreSQL.
# Extra arguments go to pytest (e.g. -k webfinger). Under CI, PostgreSQL is mandatory.
source "$(dirname "$0")/_python.sh"
echo "• installing Entraide and its test tools into $VENV" >&2
"$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
if ! bash "$ROOT/deploy/scripts/ensure-postgres.sh"; then
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "• PostgreSQL tests will be skipped (SQLite only)" >&2
fi
exec "$VENV/bin/python" -m pytest "$@"
