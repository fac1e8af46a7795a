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
#   gw_roles        gateway, protected route with `roles` (the session holds one), cache warm
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
source "$(dirname "$0")/stack.sh"

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
run gw_roles "http://127.0.0.1:$GW/staff/x" "$GW_PID $REDIS_PID" "${HDRS[@]}"
run gw_429 "http://127.0.0.1:$GW/limited/x" "$GW_PID"
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
echo
echo "| variant | req/s | p50 | p99 | CPU-us/req (SUT) | vs nginx | vs bare Pingora | Redis cmds/req |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for v in direct nginx nginx_authreq pingora gw_public gw_protected gw_nocache gw_roles gw_429; do
  c=${CPUUS[$v]}
  echo "| $v | ${RPS[$v]} | ${P50[$v]} | ${P99[$v]} | $c | $(ratio "$c" "${CPUUS[nginx]}") | $(ratio "$c" "${CPUUS[pingora]}") | ${CMDS[$v]} |"
done
echo
echo "Targets (CPU per request, this run):"
echo "- protected, warm cache / bare Pingora: $(ratio "${CPUUS[gw_protected]}" "${CPUUS[pingora]}") (target <= 1.10)"
echo "- public / bare Pingora: $(ratio "${CPUUS[gw_public]}" "${CPUUS[pingora]}") (target <= 1.05)"
echo "- protected / nginx + auth_request: $(ratio "${CPUUS[gw_protected]}" "${CPUUS[nginx_authreq]}") (target <= 0.90)"
echo "- Redis commands per protected request (warm cache): ${CMDS[gw_protected]} (target < 0.05)"
echo "- route with roles / protected (the role check and X-User-Roles): $(ratio "${CPUUS[gw_roles]}" "${CPUUS[gw_protected]}")"
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
if [ "$OPEN_LOOP" = 1 ] && [ "${RPS[gw_protected]:-0}" -gt 0 ]; then
  # The protected route at half its maximum, alone and then while wrk floods the auth service
  # with sign-ins (argon2 on every core the hashing pool may use).
  curl -sf -o /dev/null -H 'content-type: application/json' \
    -d '{"email":"load@example.com","password":"correct horse battery"}' "http://127.0.0.1:$AUTH/api/v1/simple_auth/signup" || true
  rate=$(( ${RPS[gw_protected]} / 2 ))
  p99() {
    "${SIDE[@]}" oha -z "$DURATION" -c "$CONNS" -q "$rate" --latency-correction --no-tui \
      --disable-compression "${HDRS[@]}" "http://127.0.0.1:$GW/app/x" 2>&1 \
      | awk '$1 == "99.00%" && $2 == "in" {print $3 " " $4; exit}'
  }
  alone=$(p99)
  wrk -t1 -c4 -d"$DURATION" -s load-tests/signin.lua "http://127.0.0.1:$AUTH/api/v1/simple_auth/signin" > "$tmp/flood.out" 2>&1 &
  flood=$!
  sleep 1
  during=$(p99)
  wait "$flood" || true
  signins=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$tmp/flood.out")
  echo
  echo "Sign-in flood ($signins sign-ins/s): protected route p99 at $rate req/s: alone $alone, during the flood $during"
  awk -v a="$alone" -v b="$during" 'function us(x) { split(x, p, " "); return p[2] == "ms" ? p[1] * 1000 : (p[2] == "secs" ? p[1] * 1e6 : p[1]) }
    BEGIN { printf "p99 change: %+.0f%% (target: at most +30%%)\n", (us(b) / us(a) - 1) * 100 }'
fi
echo
echo "wrk -t1 -c$CONNS -d$DURATION, closed loop; pinned=$PIN; $(nproc) CPUs; $(uname -r); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
