#!/usr/bin/env bash
# The stack the benchmarks measure, started side by side on loopback ports: an upstream
# (nginx `return 200`), nginx as a proxy, nginx + auth_request with a 204 verifier, a bare
# Pingora proxy, Redis, the auth service and two gateways (session cache on / off); then a
# real account signs in through the gateway. Sourced by benches/e2e.sh and benches/soak.sh,
# which read: BIN, tmp, pids, SUT/SIDE (CPU pinning), the ports and *_PID variables, UA,
# COOKIE, cpu(), redis_calls(), HZ.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
OPEN_LOOP=${OPEN_LOOP:-1}
# ONLY="pingora gw_public" runs just those rows; PERF_VARIANT="pingora gw_public" records a
# profile of each named row's system under test (perf record -g) into $PERF_OUT (default target/bench).
PERF_OUT=${PERF_OUT:-$PWD/target/bench}
mkdir -p "$PERF_OUT"
PIN=${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
[ -n "${PERF_VARIANT:-}" ] && ! command -v perf >/dev/null && need+=(linux-perf)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
./scripts/install-deps.sh
if [ "$OPEN_LOOP" = 1 ] && ! command -v oha >/dev/null; then
  echo "installing oha (cargo install, once)" >&2
  cargo install oha --locked >&2
fi
# BUILD=0 skips the build; BIN= measures another gateway binary (an earlier build kept aside).
[ "${BUILD:-1}" = 1 ] && cargo build --release --locked --bin authflow --example bare_pingora >&2
BIN=${BIN:-$PWD/target/release/authflow}
BARE=$PWD/target/release/examples/bare_pingora

tmp=$(mktemp -d)
pids=()
cleanup() {
  # TERM first (nginx's master then stops its workers), then KILL whatever is left.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do pkill -9 -P "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Prefixes, not functions: `$!` must be the server's own pid (taskset execs it) so that
# cleanup kills it.
SUT=(); SIDE=()
if [ "$PIN" = 1 ]; then SUT=(taskset -c 1); SIDE=(taskset -c 0); fi
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# PORT_OFFSET moves every port (two runs side by side, or a port taken by something else).
o=${PORT_OFFSET:-0}
UP=$((18081 + o)); NGX=$((18082 + o)); NGXA=$((18083 + o)); VERIFY=$((18084 + o)); BAREP=$((18085 + o))
GW=$((18000 + o)); GWNC=$((18002 + o)); AUTH=$((18001 + o)); REDIS=$((16379 + o))
for p in $UP $NGX $NGXA $VERIFY $BAREP $GW $GWNC $AUTH $REDIS; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "port $p is busy: stop what listens there first" >&2; exit 1; fi
done
mkdir -p "$tmp/up" "$tmp/ngx" "$tmp/ngxa" "$tmp/verify"
cat > "$tmp/up/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/up/pid; error_log $tmp/up/err warn;
events { worker_connections 8192; }
http { access_log off; server { listen 127.0.0.1:$UP; location / { return 200 "ok\n"; } } }
NGINX
cat > "$tmp/ngx/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/ngx/pid; error_log $tmp/ngx/err warn;
events { worker_connections 8192; }
http {
  access_log off;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGX;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGINX
# The original design: nginx asks a verifier per request (auth_request), then proxies.
cat > "$tmp/verify/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/verify/pid; error_log $tmp/verify/err warn;
events { worker_connections 8192; }
http { access_log off; server { listen 127.0.0.1:$VERIFY; location / { return 204; } } }
NGINX
cat > "$tmp/ngxa/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/ngxa/pid; error_log $tmp/ngxa/err warn;
events { worker_connections 8192; }
http {
  access_log off;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  upstream verifier { server 127.0.0.1:$VERIFY; keepalive 64; }
  server { listen 127.0.0.1:$NGXA;
    location = /_verify { internal; proxy_pass http://verifier; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri; }
    location / { auth_request /_verify; proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGINX
"${SIDE[@]}" nginx -c "$tmp/up/nginx.conf" -p "$tmp/up" & pids+=($!)
"${SUT[@]}" nginx -c "$tmp/ngxa/nginx.conf" -p "$tmp/ngxa" & NGXA_PID=$!; pids+=($NGXA_PID)
"${SUT[@]}" nginx -c "$tmp/verify/nginx.conf" -p "$tmp/verify" & VERIFY_PID=$!; pids+=($VERIFY_PID)
"${SUT[@]}" "$BARE" "127.0.0.1:$BAREP" "127.0.0.1:$UP" >/dev/null 2>&1 & BARE_PID=$!; pids+=($BARE_PID)
"${SUT[@]}" nginx -c "$tmp/ngx/nginx.conf" -p "$tmp/ngx" & NGX_PID=$!; pids+=($NGX_PID)
"${SUT[@]}" redis-server --port $REDIS --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >/dev/null & REDIS_PID=$!; pids+=($REDIS_PID)

gateway_toml() { # listen port, session cache entries (0: off)
cat <<TOML
listen = "127.0.0.1:$1"
threads = 1
[redis]
url = "redis://127.0.0.1:$REDIS"
timeout = "100ms"
[session]
cookie_name = "authflow_session"
cookie_secure = false
[session_check]
login_url = "/auth/signin"
cache_entries = $2
[rate_limit]
requests = 1000000000
per = "1s"
[[rate_limit.rules]]
name = "limited"
prefix = "/limited/"
requests = 1
per = "1h"
[[upstreams]]
name = "app"
servers = ["127.0.0.1:$UP"]
[[upstreams]]
name = "auth"
servers = ["127.0.0.1:$AUTH"]
health_check_interval = "1s"
[[routes]]
prefix = "/public/"
upstream = "app"
auth = "public"
[[routes]]
prefix = "/limited/"
upstream = "app"
auth = "public"
[[routes]]
prefix = "/app/"
upstream = "app"
auth = "required"
[[routes]]
prefix = "/staff/"
upstream = "app"
auth = "required"
roles = ["staff", "admin"]
[[routes]]
prefix = "/api/v1/simple_auth/"
upstream = "auth"
auth = "public"
auth_service = true
TOML
}
gateway_toml $GW 100000 > "$tmp/gateway.toml"
gateway_toml $GWNC 0 > "$tmp/gateway-nocache.toml"
cat > "$tmp/auth.toml" <<TOML
listen = "127.0.0.1:$AUTH"
trusted_proxies = ["127.0.0.1/32"]
[redis]
url = "redis://127.0.0.1:$REDIS"
[session]
cookie_name = "authflow_session"
cookie_secure = false
[database]
url = "sqlite://$tmp/users.db?mode=rwc"
[mail]
outbox_dir = "$tmp/outbox"
[signup]
require_email_verification = false
TOML
# AUTH_ON_GATEWAY_CORE=1 puts the auth service (and its argon2 threads) on the gateway's core,
# to show what sharing it costs during a sign-in flood.
AUTH_CPU=("${SIDE[@]}")
[ "${AUTH_ON_GATEWAY_CORE:-0}" = 1 ] && AUTH_CPU=("${SUT[@]}")
RUST_LOG=error "${AUTH_CPU[@]}" "$BIN" auth --config "$tmp/auth.toml" & pids+=($!)
for p in $UP $NGX $NGXA $VERIFY $BAREP $REDIS $AUTH; do wait_port $p; done
RUST_LOG=off "${SUT[@]}" "$BIN" gateway --config "$tmp/gateway.toml" & GW_PID=$!; pids+=($GW_PID)
RUST_LOG=off "${SUT[@]}" "$BIN" gateway --config "$tmp/gateway-nocache.toml" & GWNC_PID=$!; pids+=($GWNC_PID)
# Ready when both gateways answer /readyz (Redis up, every upstream healthy).
for port in $GW $GWNC; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done

# A real session, made the way a user gets one: sign up and sign in through the gateway.
UA="authflow-bench/1.0"
curl -sf -o /dev/null -A "$UA" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse battery"}' "http://127.0.0.1:$GW/api/v1/simple_auth/signup"
# Holding a role, for the route that needs one (read into the session at sign-in).
RUST_LOG=error "$BIN" users grant bench@example.com staff --config "$tmp/auth.toml" >/dev/null
COOKIE=$(curl -sf -D - -o /dev/null -A "$UA" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse battery"}' "http://127.0.0.1:$GW/api/v1/simple_auth/signin" \
  | tr -d '\r' | sed -n 's/^set-cookie: \(authflow_session=[^;]*\).*/\1/Ip' | head -1)
[ -n "$COOKIE" ] || { echo "sign-in failed" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -A "$UA" -H "cookie: $COOKIE" "http://127.0.0.1:$GW/app/x")
[ "$code" = 200 ] || { echo "protected route answered $code" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -A "$UA" -H "cookie: $COOKIE" "http://127.0.0.1:$GW/staff/x")
[ "$code" = 200 ] || { echo "route with roles answered $code" >&2; exit 1; }

# CPU ticks (user+sys) of the given pids and their children (nginx's workers), from /proc.
cpu() {
  local t=0 p c
  for p in "$@"; do
    for c in $p $(pgrep -P "$p"); do t=$((t + $(awk '{print $14+$15}' "/proc/$c/stat"))); done
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
# Every command Redis has run so far (INFO commandstats).
redis_calls() {
  redis-cli -p $REDIS info commandstats | tr -d '\r' | sed -n 's/.*:calls=\([0-9]*\),.*/\1/p' | awk '{s+=$1} END {print s+0}'
}

