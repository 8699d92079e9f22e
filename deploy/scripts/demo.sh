#!/usr/bin/env bash
# Install Entraide and start a node on SQLite at http://127.0.0.1:8080 with a demo association.
# Safe to run again: init and association create change nothing the second time.
source "$(dirname "$0")/_python.sh"
echo "• installing Entraide into $VENV" >&2
"$VENV/bin/python" -m pip install --quiet -e "$ROOT"
DATA="${ENTRAIDE_DATA:-$ROOT/data}"
ORIGIN="${ENTRAIDE_ORIGIN:-http://127.0.0.1:8080}"
"$VENV/bin/entraide" init --data-dir "$DATA" --origin "$ORIGIN" >/dev/null
"$VENV/bin/entraide" association create demo --name "Association de démonstration" \
  --summary "Une association de démonstration sur un nœud Entraide." --config "$DATA/entraide.toml" >/dev/null
# A demo member whose password is printed once, to sign in at $ORIGIN/login (kept on later runs).
DEMO_PASSWORD="$("$VENV/bin/entraide" member add demo-member --association demo --role member --config "$DATA/entraide.toml" \
  | sed -n 's/^password: //p')"
echo "• open $ORIGIN/ in a browser; sign in at $ORIGIN/login as demo-member" >&2
if [ -n "$DEMO_PASSWORD" ]; then
  echo "  with the password $DEMO_PASSWORD (shown this once; change it under My account)" >&2
else
  echo "  with the password printed the first time this script ran" >&2
fi
echo "• try: curl '$ORIGIN/.well-known/webfinger?resource=acct:demo@${ORIGIN#*://}'" >&2
exec "$VENV/bin/entraide" serve --config "$DATA/entraide.toml"
