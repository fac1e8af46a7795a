#!/usr/bin/env bash
# Memory under a long protected-route load with many distinct sessions, as the gateway's
# session cache sees it in production: SESSIONS real sign-ins (default 10000, against the
# auth service directly, since the gateway limits sign-ins per IP), then SOAK (default 10m)
# of wrk spreading requests over every cookie, sampling the gateway's RSS every 30 s. Passes
# when the RSS at the end is within 10% of the RSS after the first minute (warm cache).
#
#   benches/soak.sh                        # 10000 sessions, 10 minutes
#   SESSIONS=2000 SOAK=2m benches/soak.sh   # a quicker look
set -euo pipefail
OPEN_LOOP=0
source "$(dirname "$0")/stack.sh"
SESSIONS=${SESSIONS:-10000}
SOAK=${SOAK:-10m}
ACCOUNTS=${ACCOUNTS:-100}

echo "signing in $SESSIONS sessions over $ACCOUNTS accounts (argon2 bound: a minute or two)" >&2
for a in $(seq "$ACCOUNTS"); do
  curl -sf -o /dev/null -A "$UA" -H 'content-type: application/json' \
    -d "{\"email\":\"soak$a@example.com\",\"password\":\"correct horse battery\"}" \
    "http://127.0.0.1:$AUTH/api/v1/simple_auth/signup" || true
done
sign_in() { # account number -> one Cookie header value on stdout
  curl -s -D - -o /dev/null -A "$UA" -H 'content-type: application/json' \
    -d "{\"email\":\"soak$1@example.com\",\"password\":\"correct horse battery\"}" \
    "http://127.0.0.1:$AUTH/api/v1/simple_auth/signin" \
    | tr -d '\r' | sed -n 's/^set-cookie: \(authflow_session=[^;]*\).*/\1/Ip' | head -1
}
export -f sign_in; export UA AUTH
seq "$SESSIONS" | awk -v n="$ACCOUNTS" '{print ($1 % n) + 1}' \
  | xargs -P "$(nproc)" -I{} bash -c 'sign_in {}' > "$tmp/cookies.txt"
got=$(grep -c . "$tmp/cookies.txt" || true)
echo "$got sessions" >&2
[ "$got" -ge $((SESSIONS * 9 / 10)) ] || { echo "too few sign-ins succeeded" >&2; exit 1; }

rss() { awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status"; }
echo "| elapsed | gateway RSS (MiB) |"
echo "| ---: | ---: |"
echo "| 0 s (before load) | $(( $(rss) / 1024 )) |"
"${SIDE[@]}" wrk -t1 -c"$CONNS" -d"$SOAK" -s benches/cookies.lua "http://127.0.0.1:$GW/app/x" \
  -- "$tmp/cookies.txt" "$UA" > "$tmp/wrk.out" 2>&1 &
WRK=$!
t=0; first=""; peak=0
while kill -0 "$WRK" 2>/dev/null; do
  sleep 30; t=$((t + 30))
  kill -0 "$WRK" 2>/dev/null || break
  r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
  [ "$t" -ge 60 ] && [ -z "$first" ] && first=$r
  echo "| $t s | $((r / 1024)) |"
done
wait "$WRK" || true
last=$(rss)
echo
grep -E "requests in|Requests/sec|Non-2xx" "$tmp/wrk.out" || true
echo "sessions: $got; RSS after 1 min: $((${first:-$last} / 1024)) MiB; at the end: $((last / 1024)) MiB; peak: $((peak / 1024)) MiB"
awk -v a="${first:-$last}" -v b="$last" 'BEGIN {
  d = (b - a) / a * 100; printf "growth after warm-up: %+.1f%% (target: within 10%%)\n", d; exit (d > 10 || d < -10) }'
