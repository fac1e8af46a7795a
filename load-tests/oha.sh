#!/usr/bin/env bash
# Open-loop latency with oha (coordinated-omission corrected) against a running stack.
#   cargo install oha          # once
#   COOKIE='authflow_session=...' RATE=2000 load-tests/oha.sh http://localhost:8000/app/
# COOKIE and UA must be those of the session's sign-in (the device fingerprint).
set -euo pipefail
url=${1:-http://localhost:8000/health}
RATE=${RATE:-1000}
DURATION=${DURATION:-30s}
CONNS=${CONNS:-64}
UA=${UA:-authflow-bench/1.0}
args=(-z "$DURATION" -c "$CONNS" -q "$RATE" --latency-correction --no-tui --disable-compression -H "user-agent: $UA")
[ -n "${COOKIE:-}" ] && args+=(-H "cookie: $COOKIE")
exec oha "${args[@]}" "$url"
