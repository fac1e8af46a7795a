#!/usr/bin/env bash
# End-to-end benchmark, side by side in one run on this machine:
#   V0 upstream direct          (nginx `return 200`, calibration)
#   V1 nginx reverse proxy      (1 worker, upstream keepalive: the fair baseline)
#   V2 gateway, public route    (rate limit on, no session)
#   V3 gateway, protected route (cookie -> Redis GET -> fingerprint -> forward)
#   V5 gateway, 429 path        (every request rejected by the limiter)
# Prints requests/s, latency percentiles (closed loop, wrk) and CPU time per request of the
# system under test (gateway + Redis for V3), and each as a ratio to nginx.
#
#   benches/e2e.sh                     # 10 s per variant, 64 connections
#   DURATION=30s CONNS=256 benches/e2e.sh
# With PIN=1 (default on >= 2 cores) the system under test runs on CPU 1 and wrk + the
# upstream on CPU 0, so figures are per core of proxy work.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PIN=${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
./scripts/install-deps.sh
cargo build --release --locked --bin authflow >&2
BIN=$PWD/target/release/authflow

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

UP=18081; NGX=18082; GW=18000; AUTH=18001; REDIS=16379
for p in $UP $NGX $GW $AUTH $REDIS; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "port $p is busy: stop what listens there first" >&2; exit 1; fi
done
mkdir -p "$tmp/up" "$tmp/ngx"
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
"${SIDE[@]}" nginx -c "$tmp/up/nginx.conf" -p "$tmp/up" & pids+=($!)
"${SUT[@]}" nginx -c "$tmp/ngx/nginx.conf" -p "$tmp/ngx" & NGX_PID=$!; pids+=($NGX_PID)
"${SUT[@]}" redis-server --port $REDIS --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >/dev/null & REDIS_PID=$!; pids+=($REDIS_PID)

cat > "$tmp/gateway.toml" <<TOML
listen = "127.0.0.1:$GW"
threads = 1
[redis]
url = "redis://127.0.0.1:$REDIS"
timeout = "100ms"
[session]
cookie_name = "authflow_session"
cookie_secure = false
login_url = "/auth/signin"
[rate_limit]
requests = 1000000000
per = "1s"
[[rate_limit.rules]]
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
prefix = "/api/v1/simple_auth/"
upstream = "auth"
auth = "public"
auth_service = true
TOML
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
RUST_LOG=error "${SIDE[@]}" "$BIN" auth --config "$tmp/auth.toml" & pids+=($!)
for p in $UP $NGX $REDIS $AUTH; do wait_port $p; done
RUST_LOG=off "${SUT[@]}" "$BIN" gateway --config "$tmp/gateway.toml" & GW_PID=$!; pids+=($GW_PID)
# Ready when the gateway's health checks see both upstreams.
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$GW/health" | grep -q '"auth":{"healthy":1' && break; sleep 0.1
done

# A real session, made the way a user gets one: sign up and sign in through the gateway.
UA="authflow-bench/1.0"
curl -sf -o /dev/null -A "$UA" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse battery"}' "http://127.0.0.1:$GW/api/v1/simple_auth/signup"
COOKIE=$(curl -sf -D - -o /dev/null -A "$UA" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse battery"}' "http://127.0.0.1:$GW/api/v1/simple_auth/signin" \
  | tr -d '\r' | sed -n 's/^set-cookie: \(authflow_session=[^;]*\).*/\1/Ip' | head -1)
[ -n "$COOKIE" ] || { echo "sign-in failed" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -A "$UA" -H "cookie: $COOKIE" "http://127.0.0.1:$GW/app/x")
[ "$code" = 200 ] || { echo "protected route answered $code" >&2; exit 1; }

# CPU ticks (user+sys) of the given pids and their children (nginx's workers), from /proc.
cpu() {
  local t=0 p c
  for p in "$@"; do
    for c in $p $(pgrep -P "$p"); do t=$((t + $(awk '{print $14+$15}' "/proc/$c/stat"))); done
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

declare -A RPS CPUUS P50 P99
run() { # name url [pids of the system under test...]
  local name=$1 url=$2; shift 2
  "${SIDE[@]}" wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null 2>&1 || true   # warm-up
  local before; before=$(cpu "$@")
  local out; out=$("${SIDE[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url")
  local after; after=$(cpu "$@")
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  RPS[$name]=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  P50[$name]=$(echo "$out" | awk '$1=="50%" {print $2}')
  P99[$name]=$(echo "$out" | awk '$1=="99%" {print $2}')
  if [ "$#" -gt 0 ] && [ "$reqs" -gt 0 ]; then
    CPUUS[$name]=$(awk -v c=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.1f", c / hz * 1e6 / n}')
  else
    CPUUS[$name]="-"
  fi
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "$name: ${RPS[$name]} req/s, p50 ${P50[$name]}, p99 ${P99[$name]}, ${CPUUS[$name]} CPU-us/req${non2xx:+, non-2xx $non2xx}" >&2
}

run V0_direct "http://127.0.0.1:$UP/public/x"
run V1_nginx "http://127.0.0.1:$NGX/public/x" $NGX_PID
run V2_gateway_public "http://127.0.0.1:$GW/public/x" $GW_PID
run_protected() {
  "${SIDE[@]}" wrk -t1 -c"$CONNS" -d2s -H "cookie: $COOKIE" -H "user-agent: $UA" "http://127.0.0.1:$GW/app/x" >/dev/null 2>&1 || true
  local before; before=$(cpu $GW_PID $REDIS_PID)
  local out; out=$("${SIDE[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "cookie: $COOKIE" -H "user-agent: $UA" "http://127.0.0.1:$GW/app/x")
  local after; after=$(cpu $GW_PID $REDIS_PID)
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  RPS[V3_gateway_protected]=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  P50[V3_gateway_protected]=$(echo "$out" | awk '$1=="50%" {print $2}')
  P99[V3_gateway_protected]=$(echo "$out" | awk '$1=="99%" {print $2}')
  CPUUS[V3_gateway_protected]=$(awk -v c=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.1f", c / hz * 1e6 / n}')
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "V3_gateway_protected: ${RPS[V3_gateway_protected]} req/s, ${CPUUS[V3_gateway_protected]} CPU-us/req (gateway+redis)${non2xx:+, non-2xx $non2xx}" >&2
}
run_protected
run V5_gateway_429 "http://127.0.0.1:$GW/limited/x" $GW_PID

echo
echo "| variant | req/s | vs nginx | p50 | p99 | CPU-us/req (SUT) | vs nginx |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for v in V0_direct V1_nginx V2_gateway_public V3_gateway_protected V5_gateway_429; do
  r=${RPS[$v]}; c=${CPUUS[$v]}
  rr=$(awk -v a="$r" -v b="${RPS[V1_nginx]}" 'BEGIN {printf "%.2f", a / b}')
  cr=$( [ "$c" = "-" ] && echo "-" || awk -v a="$c" -v b="${CPUUS[V1_nginx]}" 'BEGIN {printf "%.2f", a / b}')
  echo "| $v | $r | $rr | ${P50[$v]} | ${P99[$v]} | $c | $cr |"
done
echo
echo "wrk -t1 -c$CONNS -d$DURATION, closed loop; pinned=$PIN; $(nproc) CPUs; $(uname -r)"
