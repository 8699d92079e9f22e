#!/usr/bin/env bash
# Install Entraide with its test tools and run the whole test suite on SQLite and PostgreSQL.
# Extra arguments go to pytest (e.g. -k webfinger). Under CI, PostgreSQL is mandatory.
source "$(dirname "$0")/_python.sh"
echo "• installing Entraide and its test tools into $VENV" >&2
"$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
# The real Fedify peer of tests/interop; Node 22 ships inside the pinned npm package.
if command -v npm >/dev/null 2>&1; then
  echo "• installing the Fedify interop peer (npm ci)" >&2
  npm ci --prefix "$ROOT/tests/interop/peer" --no-audit --no-fund --loglevel=error >/dev/null
elif [ "${CI:-}" = "true" ]; then
  echo "entraide: npm is required under CI for the Fedify interop tests" >&2; exit 1
else
  echo "• npm not found: the Fedify interop tests will be skipped" >&2
fi
# System packages of the tests, installed under CI only (skipped locally without them): Debian's Chromium for
# the browser tests (tests/browser), nginx for `nginx -t` of deploy/nginx (tests/test_deploy_files.py);
# systemd-analyze comes with Debian itself.
if [ "${CI:-}" = "true" ]; then
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "• installing ${missing[*]} (apt-get)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null
  fi
fi
# axe-core for the browser tests.
if command -v npm >/dev/null 2>&1; then
  npm ci --prefix "$ROOT/tests/browser" --no-audit --no-fund --loglevel=error >/dev/null
fi
if ! bash "$ROOT/deploy/scripts/ensure-postgres.sh"; then
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "• PostgreSQL tests will be skipped (SQLite only)" >&2
fi
# Tests run in parallel processes, one per core up to 4 (each has its own databases and ports);
# pass -n 0 to run them in this process (e.g. with --pdb).
exec "$VENV/bin/python" -m pytest --numprocesses=auto --maxprocesses=4 "$@"
