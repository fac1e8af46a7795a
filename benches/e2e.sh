#!/usr/bin/env bash
# End-to-end benchmark, side by side in one run on this machine:
#   direct          upstream direct (nginx `return 200`, calibration)
#   nginx           nginx reverse proxy (1 worker, upstream keepalive)
#   nginx_authreq   nginx + auth_request to a verifier that only answers 204 (the original
#                   design's shape, and a lower bound for it: the verifier checks nothing)
#   pingora         a bare Pingora proxy (benches/bare_pingora.rs: only upstream_peer)
#   gw_public       gateway, public route (rate limit on, no session)
#   gw_protected    gateway, protected route, session cache warm
#   gw_nocache      gateway, protected route, cache off (cookie -> Redis MGET -> forward)
#   gw_429          gateway, every request rejected by the limiter
# Prints req/s, closed-loop percentiles (wrk), CPU-us per request of the system under test
# (with the verifier for nginx_authreq, with Redis for the protected rows), the ratios the
# targets are stated in, Redis commands per protected request (INFO commandstats), the
# gateway's peak RSS, and open-loop latency of the protected route at 25/50/75% of its
# measured maximum (oha, --latency-correction; OPEN_LOOP=0 skips it).
#
#   benches/e2e.sh                     # 10 s per variant, 64 connections
#   DURATION=30s CONNS=256 benches/e2e.sh
# With PIN=1 (default on >= 2 cores) the system under test runs on CPU 1 and wrk + the
# upstream on CPU 0, so figures are per core of proxy work.
set -euo pipefail
cd "$(dirname "$0")/.."

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
cargo build --release --locked --bin authflow --example bare_pingora >&2
BIN=$PWD/target/release/authflow
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

UP=18081; NGX=18082; NGXA=18083; VERIFY=18084; BAREP=18085; GW=18000; GWNC=18002; AUTH=18001; REDIS=16379
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
RUST_LOG=error "${SIDE[@]}" "$BIN" auth --config "$tmp/auth.toml" & pids+=($!)
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
# Every command Redis has run so far (INFO commandstats).
redis_calls() {
  redis-cli -p $REDIS info commandstats | tr -d '\r' | sed -n 's/.*:calls=\([0-9]*\),.*/\1/p' | awk '{s+=$1} END {print s+0}'
}

declare -A RPS CPUUS P50 P99 CMDS
HDRS=(-H "cookie: $COOKIE" -H "user-agent: $UA")
run() { # name url "pids of the system under test" [wrk header args...]
  local name=$1 url=$2 sut=$3; shift 3
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then
    RPS[$name]=0; CPUUS[$name]="-"; CMDS[$name]="-"; P50[$name]="-"; P99[$name]="-"; return
  fi
  "${SIDE[@]}" wrk -t1 -c"$CONNS" -d2s "$@" "$url" >/dev/null 2>&1 || true   # warm-up
  local before calls; before=$(cpu $sut); calls=$(redis_calls)
  local perf_pid="" stat_pid=""
  if [[ " ${PERF_VARIANT:-} " == *" $name "* ]]; then
    perf record -F 1999 -g -o "$PERF_OUT/perf-$name.data" -p "${sut%% *}" >/dev/null 2>&1 & perf_pid=$!
    perf stat -e raw_syscalls:sys_enter -x, -o "$PERF_OUT/syscalls-$name.csv" -p "${sut%% *}" & stat_pid=$!
  fi
  local out; out=$("${SIDE[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$@" "$url")
  local after; after=$(cpu $sut)
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" "$stat_pid"; wait "$perf_pid" "$stat_pid" || true
    awk -F, -v n="$reqs" '$3 == "raw_syscalls:sys_enter" {printf "syscalls per request: %.2f\n", $1 / n}' \
      "$PERF_OUT/syscalls-$name.csv" > "$PERF_OUT/syscalls-$name.txt"
    cat "$PERF_OUT/syscalls-$name.txt" >&2
    perf report -i "$PERF_OUT/perf-$name.data" --no-children --stdio -g none --percent-limit 0.3 2>/dev/null \
      | grep -v '^$' > "$PERF_OUT/perf-$name.txt" || true
    echo "profile of $name: $PERF_OUT/perf-$name.txt" >&2
  fi
  CMDS[$name]=$(awk -v c=$(( $(redis_calls) - calls )) -v n="$reqs" 'BEGIN {printf "%.3f", c / n}')
  RPS[$name]=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  P50[$name]=$(echo "$out" | awk '$1=="50%" {print $2}')
  P99[$name]=$(echo "$out" | awk '$1=="99%" {print $2}')
  if [ -n "$sut" ] && [ "$reqs" -gt 0 ]; then
    CPUUS[$name]=$(awk -v c=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.1f", c / hz * 1e6 / n}')
  else
    CPUUS[$name]="-"
  fi
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "$name: ${RPS[$name]} req/s, p50 ${P50[$name]}, p99 ${P99[$name]}, ${CPUUS[$name]} CPU-us/req, ${CMDS[$name]} Redis cmds/req${non2xx:+, non-2xx $non2xx}" >&2
}

run direct "http://127.0.0.1:$UP/public/x" ""
run nginx "http://127.0.0.1:$NGX/public/x" "$NGX_PID"
run nginx_authreq "http://127.0.0.1:$NGXA/app/x" "$NGXA_PID $VERIFY_PID"
run pingora "http://127.0.0.1:$BAREP/public/x" "$BARE_PID"
run gw_public "http://127.0.0.1:$GW/public/x" "$GW_PID"
run gw_protected "http://127.0.0.1:$GW/app/x" "$GW_PID $REDIS_PID" "${HDRS[@]}"
run gw_nocache "http://127.0.0.1:$GWNC/app/x" "$GWNC_PID $REDIS_PID" "${HDRS[@]}"
run gw_429 "http://127.0.0.1:$GW/limited/x" "$GW_PID"
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
echo
echo "| variant | req/s | p50 | p99 | CPU-us/req (SUT) | vs nginx | vs bare Pingora | Redis cmds/req |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for v in direct nginx nginx_authreq pingora gw_public gw_protected gw_nocache gw_429; do
  c=${CPUUS[$v]}
  echo "| $v | ${RPS[$v]} | ${P50[$v]} | ${P99[$v]} | $c | $(ratio "$c" "${CPUUS[nginx]}") | $(ratio "$c" "${CPUUS[pingora]}") | ${CMDS[$v]} |"
done
echo
echo "Targets (CPU per request, this run):"
echo "- protected, warm cache / bare Pingora: $(ratio "${CPUUS[gw_protected]}" "${CPUUS[pingora]}") (target <= 1.10)"
echo "- public / bare Pingora: $(ratio "${CPUUS[gw_public]}" "${CPUUS[pingora]}") (target <= 1.05)"
echo "- protected / nginx + auth_request: $(ratio "${CPUUS[gw_protected]}" "${CPUUS[nginx_authreq]}") (target <= 0.90)"
echo "- Redis commands per protected request (warm cache): ${CMDS[gw_protected]} (target < 0.05)"
echo "- 429 path / bare Pingora: $(ratio "${CPUUS[gw_429]}" "${CPUUS[pingora]}") (target <= 0.40)"
echo "- gateway peak RSS: $((RSS_KB / 1024)) MiB"

if [ "$OPEN_LOOP" = 1 ]; then
  echo
  echo "Open loop, protected route, warm cache (oha --latency-correction, $DURATION per rate):"
  echo "| rate (req/s) | share of max | p50 | p99 | p99.9 |"
  echo "| ---: | ---: | ---: | ---: | ---: |"
  for pct in 25 50 75; do
    rate=$(( ${RPS[gw_protected]:-0} * pct / 100 ))
    [ "$rate" -gt 0 ] || continue
    out=$("${SIDE[@]}" oha -z "$DURATION" -c "$CONNS" -q "$rate" --latency-correction --no-tui \
      --disable-compression "${HDRS[@]}" "http://127.0.0.1:$GW/app/x" 2>&1)
    pick() { echo "$out" | awk -v k="$1" '$1 == k && $2 == "in" {print $3 " " $4; exit}'; }
    echo "| $rate | $pct% | $(pick '50.00%') | $(pick '99.00%') | $(pick '99.90%') |"
  done
fi
echo
echo "wrk -t1 -c$CONNS -d$DURATION, closed loop; pinned=$PIN; $(nproc) CPUs; $(uname -r); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
