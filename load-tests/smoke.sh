#!/usr/bin/env bash
# The k6 scenarios of load-tests/k6/protected.js, driven with oha against a real stack (the
# one benches/e2e.sh measures), a few seconds each, checking what every scenario must
# answer: public 200, protected 200, an ended session 401, an abusive client 429, a sign-in
# storm 200 (or 429 once the gateway's sign-in limit is reached). Exits non-zero on any
# unexpected status.
#
#   load-tests/smoke.sh            # SMOKE=3s RATE=500 by default
set -euo pipefail
OPEN_LOOP=1
source "$(dirname "$0")/../benches/stack.sh"
SMOKE=${SMOKE:-3s}
RATE=${RATE:-500}
failed=0

# oha's status code distribution as "code:count" words.
statuses() { awk '/Status code distribution/ {on=1; next} on && /\[[0-9]+\]/ {gsub(/[\[\]]/, "", $1); printf "%s:%s ", $1, $2} on && /^$/ {on=0}'; }
scenario() { # name "allowed codes" oha args...
  local name=$1 allowed=$2; shift 2
  local got; got=$(oha -z "$SMOKE" -q "$RATE" -c 16 --no-tui --disable-compression "$@" 2>&1 | statuses)
  local bad=""
  for pair in $got; do
    [[ " $allowed " == *" ${pair%%:*} "* ]] || bad+=" $pair"
  done
  if [ -z "$got" ] || [ -n "$bad" ]; then
    echo "FAIL $name: got ${got:-nothing} (allowed: $allowed)"; failed=1
  else
    echo "ok   $name: $got"
  fi
}

# A session that was ended: signed in, then logged out.
ENDED=$(curl -sf -D - -o /dev/null -A "$UA" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse battery"}' "http://127.0.0.1:$AUTH/api/v1/simple_auth/signin" \
  | tr -d '\r' | sed -n 's/^set-cookie: \(authflow_session=[^;]*\).*/\1/Ip' | head -1)
curl -sf -o /dev/null -X POST -A "$UA" -H "cookie: $ENDED" "http://127.0.0.1:$GW/api/v1/simple_auth/logout"

scenario public "200" "http://127.0.0.1:$GW/public/x"
scenario protected "200" -H "cookie: $COOKIE" -H "user-agent: $UA" "http://127.0.0.1:$GW/app/x"
scenario expired "401" -H "cookie: $ENDED" -H "user-agent: $UA" -H "accept: application/json" "http://127.0.0.1:$GW/app/x"
scenario limited "200 429" "http://127.0.0.1:$GW/limited/x"
scenario signins "200 429" -m POST -T application/json -H "user-agent: $UA" \
  -d '{"email":"bench@example.com","password":"correct horse battery"}' "http://127.0.0.1:$GW/api/v1/simple_auth/signin"
# The limited route allows one request an hour: nearly everything must be 429.
n429=$(oha -z 1s -q 100 -c 4 --no-tui "http://127.0.0.1:$GW/limited/x" 2>&1 | statuses | tr ' ' '\n' | sed -n 's/^429://p')
[ "${n429:-0}" -gt 50 ] || { echo "FAIL limited: only ${n429:-0} of ~100 were 429"; failed=1; }
exit $failed
