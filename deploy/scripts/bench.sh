#!/usr/bin/env bash
# Install Entraide and run the benchmarks of tests/benchmarks/ (see its README.md): inbox, fan-out, reads.
# Each prints a table and the ratios measured in the same run; the text and JSON results are also
# written to $BENCH_OUT (default: a new directory under /tmp). Everything runs on 127.0.0.1.
#
#   bash deploy/scripts/bench.sh                 # all three
#   bash deploy/scripts/bench.sh inbox reads     # some of them
#   BENCH_INBOX_ARGS="-n 6000 --profile" bash deploy/scripts/bench.sh inbox
#   bash deploy/scripts/bench.sh --objects 100000  # reads built every time at 1,000 and 100,000 stored
#                                                  # items, side by side (the "scale" benchmark)
#   bash deploy/scripts/bench.sh --objects 100000 scale reads
#
# --objects N: the large size of the scale benchmark (bulk-loaded into one association); given alone,
# it runs that benchmark only. Options per benchmark: BENCH_INBOX_ARGS, BENCH_FANOUT_ARGS,
# BENCH_READS_ARGS, BENCH_SCALE_ARGS (see --help of
# python -m tests.benchmarks.bench_inbox etc.). PostgreSQL (inbox target b) is started if installed
# and skipped with a message otherwise; the Fedify peer (targets d and e: the interop peer and a
# minimal Fedify app use its packages) is installed with npm when npm is
# available (BENCH_FEDIFY=0 skips it).
source "$(dirname "$0")/_python.sh"
OUT="${BENCH_OUT:-$(mktemp -d /tmp/entraide-bench.XXXXXX)}"
mkdir -p "$OUT"
echo "• installing Entraide and the benchmark tools into $VENV (log: $OUT/pip.log)" >&2
# The optional "bench" extra holds the profiler (py-spy, for --profile); pip only warns while it is absent.
if ! "$VENV/bin/python" -m pip install --quiet -e "$ROOT[bench]" >"$OUT/pip.log" 2>&1; then
  cat "$OUT/pip.log" >&2
  exit 1
fi

INBOX_ARGS=()
if ! bash "$ROOT/deploy/scripts/ensure-postgres.sh"; then
  echo "• PostgreSQL unavailable: the inbox benchmark's target (b) will be skipped" >&2
  INBOX_ARGS+=(--no-pg)
fi
PEER="$ROOT/tests/interop/peer"
if [ "${BENCH_FEDIFY:-1}" != "0" ] && [ -f "$PEER/package-lock.json" ] && [ ! -d "$PEER/node_modules/@fedify" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "• installing the Fedify peer (npm ci --prefix tests/interop/peer)" >&2
    npm ci --prefix "$PEER" --no-audit --no-fund --loglevel=error >&2 ||
      echo "• npm ci failed: the inbox benchmark's targets (d) and (e) will be reported as not available" >&2
  else
    echo "• npm not found: the inbox benchmark's targets (d) and (e) will be reported as not available" >&2
  fi
fi

OBJECTS=""
BENCHES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --objects) OBJECTS="${2:?--objects needs a number}"; shift 2 ;;
    --objects=*) OBJECTS="${1#--objects=}"; shift ;;
    *) BENCHES+=("$1"); shift ;;
  esac
done
if [ -n "$OBJECTS" ] && ! [[ "$OBJECTS" =~ ^[0-9]+$ ]]; then
  echo "--objects must be a whole number (got '$OBJECTS')" >&2; exit 2
fi
if [ ${#BENCHES[@]} -eq 0 ]; then
  if [ -n "$OBJECTS" ]; then BENCHES=(scale); else BENCHES=(inbox fanout reads); fi
fi
status=0
for bench in "${BENCHES[@]}"; do
  case "$bench" in
    inbox) extra=(${BENCH_INBOX_ARGS:-} "${INBOX_ARGS[@]}") ;;
    fanout) extra=(${BENCH_FANOUT_ARGS:-}) ;;
    reads) extra=(${BENCH_READS_ARGS:-}) ;;
    scale) extra=(${OBJECTS:+--objects "$OBJECTS"} ${BENCH_SCALE_ARGS:-}) ;;
    *) echo "unknown benchmark '$bench' (inbox, fanout, reads, scale)" >&2; exit 2 ;;
  esac
  echo "════ $bench ════"
  # Bounded: every benchmark stops its servers itself; this is the backstop.
  set +e
  timeout --kill-after=30 900 "$VENV/bin/python" -m "tests.benchmarks.bench_$bench" \
    --work-dir "$OUT/$bench" --json "$OUT/$bench.json" "${extra[@]}" 2>&1 | tee "$OUT/$bench.txt"
  rc=${PIPESTATUS[0]}
  set -e
  [ "$rc" -eq 0 ] || { echo "• bench_$bench exited with $rc" >&2; status=1; }
done
echo "• results: $OUT (tables in *.txt, numbers in *.json, server logs in */)" >&2
exit $status
