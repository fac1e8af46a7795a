#!/usr/bin/env bash
# HTTP/2 benchmark, side by side in one run: requests multiplexed on few cleartext HTTP/2
# connections (h2load, prior knowledge), against nginx's HTTP/2 on the same upstream.
#   nginx_h2        nginx `listen ... http2` (h2c), proxy_pass to the upstream (HTTP/1.1 keepalive)
#   gw_h2_public    gateway with h2c = true, public route
#   gw_h2_protected gateway with h2c = true, protected route, session cache warm
#   gw_h1_protected the same route over HTTP/1.1 (wrk), for the cost of HTTP/2 itself
# Prints req/s, mean and p99 latency (h2load's per-request times), and CPU-us per request of
# the system under test.
#
#   benches/h2.sh                               # 10 s each, 4 connections x 32 streams
#   DURATION=30 H2_CONNS=8 H2_STREAMS=64 benches/h2.sh
set -euo pipefail
OPEN_LOOP=0
source "$(dirname "$0")/stack.sh"
command -v h2load >/dev/null || { echo "h2load missing: scripts/install-deps.sh installs nghttp2-client" >&2; exit 1; }

SECS=${DURATION%s}
H2_CONNS=${H2_CONNS:-4}
H2_STREAMS=${H2_STREAMS:-32}
NGXH2=$((18086 + o)); GWH2=$((18087 + o))

mkdir -p "$tmp/ngxh2"
cat > "$tmp/ngxh2/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/ngxh2/pid; error_log $tmp/ngxh2/err warn;
events { worker_connections 8192; }
http {
  access_log off;
  http2_max_concurrent_streams 128;
  # nginx ends an HTTP/2 connection after 1000 requests by default (h2load does not reconnect).
  keepalive_requests 100000000;
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGXH2 http2;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGINX
"${SUT[@]}" nginx -c "$tmp/ngxh2/nginx.conf" -p "$tmp/ngxh2" & NGXH2_PID=$!; pids+=($NGXH2_PID)
{ echo "h2c = true"; gateway_toml $GWH2 100000; } > "$tmp/gateway-h2.toml"
RUST_LOG=off "${SUT[@]}" "$BIN" gateway --config "$tmp/gateway-h2.toml" & GWH2_PID=$!; pids+=($GWH2_PID)
wait_port $NGXH2
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GWH2/readyz" >/dev/null && break; sleep 0.1; done
code=$(curl -s -o /dev/null -w '%{http_code} %{http_version}' --http2-prior-knowledge -A "$UA" \
  -H "cookie: $COOKIE" "http://127.0.0.1:$GWH2/app/x")
[ "$code" = "200 2" ] || { echo "protected route over h2c answered $code" >&2; exit 1; }

declare -A RPS MEAN P99 CPUUS
h2run() { # name url "pids of the system under test" [h2load header args...]
  local name=$1 url=$2 sut=$3; shift 3
  "${SIDE[@]}" h2load -c "$H2_CONNS" -m "$H2_STREAMS" -D 2 "$@" "$url" >/dev/null 2>&1 || true
  local before; before=$(cpu $sut)
  local out; out=$("${SIDE[@]}" h2load -c "$H2_CONNS" -m "$H2_STREAMS" -D "$SECS" "$@" "$url")
  local after; after=$(cpu $sut)
  local done_; done_=$(echo "$out" | awk '/^requests:/ {print $6}')
  local ok; ok=$(echo "$out" | awk '/^status codes:/ {print $3}')
  [ "${ok:-0}" -gt 0 ] || { echo "$name: no 2xx answers" >&2; echo "$out" >&2; exit 1; }
  RPS[$name]=$(echo "$out" | awk '/^finished in/ {printf "%.0f", $4}')
  MEAN[$name]=$(echo "$out" | awk '/^time for request:/ {print $6}')
  # h2load prints min/max/mean/sd; p99 is not among them: max stands in as the worst case.
  P99[$name]=$(echo "$out" | awk '/^time for request:/ {print $5}')
  CPUUS[$name]=$(awk -v c=$((after - before)) -v hz="$HZ" -v n="$done_" 'BEGIN {printf "%.1f", c / hz * 1e6 / n}')
}
h2run nginx_h2 "http://127.0.0.1:$NGXH2/public/x" "$NGXH2_PID"
h2run gw_h2_public "http://127.0.0.1:$GWH2/public/x" "$GWH2_PID"
h2run gw_h2_protected "http://127.0.0.1:$GWH2/app/x" "$GWH2_PID $REDIS_PID" -H "cookie: $COOKIE" -H "user-agent: $UA"

# The same protected route over HTTP/1.1 keep-alive (wrk, as many connections as streams).
before=$(cpu $GWH2_PID $REDIS_PID)
out=$("${SIDE[@]}" wrk -t1 -c$((H2_CONNS * H2_STREAMS)) -d"${SECS}s" --latency \
  -H "cookie: $COOKIE" -H "user-agent: $UA" "http://127.0.0.1:$GWH2/app/x")
after=$(cpu $GWH2_PID $REDIS_PID)
reqs=$(echo "$out" | awk '/requests in/ {print $1}')
RPS[gw_h1_protected]=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
MEAN[gw_h1_protected]=$(echo "$out" | awk '$1=="Latency" {print $2; exit}')
P99[gw_h1_protected]=$(echo "$out" | awk '$1=="99%" {print $2}')
CPUUS[gw_h1_protected]=$(awk -v c=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.1f", c / hz * 1e6 / n}')

echo
echo "HTTP/2 (h2c), $H2_CONNS connections x $H2_STREAMS streams, ${SECS}s each, PIN=$PIN"
printf "%-18s %10s %12s %12s %12s\n" variant "req/s" "mean" "max/p99" "CPU-us/req"
for v in nginx_h2 gw_h2_public gw_h2_protected gw_h1_protected; do
  printf "%-18s %10s %12s %12s %12s\n" "$v" "${RPS[$v]}" "${MEAN[$v]}" "${P99[$v]}" "${CPUUS[$v]}"
done
awk -v n="${CPUUS[nginx_h2]}" -v p="${CPUUS[gw_h2_public]}" -v q="${CPUUS[gw_h2_protected]}" -v h="${CPUUS[gw_h1_protected]}" \
  'BEGIN {printf "CPU per request vs nginx HTTP/2: public %.2fx, protected %.2fx; protected h2 vs h1.1: %.2fx\n", p / n, q / n, q / h}'
