#!/usr/bin/env bash
# Instructions per request, side by side in one run (callgrind): steadier than CPU time on
# these shared 2-core machines (three runs agree to within ~1%, where CPU µs move 20-50%).
#
# Each system under test runs under `valgrind --tool=callgrind --instr-atstart=no`; after a
# warm-up (uninstrumented: caches, pools and the session cache fill) `callgrind_control -i on`
# turns counting on, `-z` zeroes it, `wrk -t1 -c8 -d5s` runs, `-d` dumps; user-space
# instructions (Ir, every thread of the process) divided by wrk's request count.
#
#   nginx          nginx proxy_pass, 1 process (master_process off), upstream keep-alive
#   nginx_authreq  nginx + auth_request to a 204 verifier served by the same process
#   pingora        bare Pingora 0.9 (benches/bare_pingora.rs), mimalloc: the baseline
#   pingora_glibc  the same with glibc malloc (BARE_ALLOC=system)
#   gw_public      gateway, public route
#   gw_protected   gateway, protected route, session cache warm
#   gw_nocache     gateway, protected route, cache off (Redis' own instructions not counted)
#   gw_429         gateway, every request rejected by the limiter
#   gw_verify      gateway's forward-auth /verify, asked directly (a session check, no upstream)
#   nginx_verify   nginx + auth_request to the gateway's /verify (both processes counted)
#
#   benches/instructions.sh
#   ONLY="pingora gw_protected" benches/instructions.sh
#   BREAKDOWN="gw_protected gw_public" benches/instructions.sh   # per-crate extra vs pingora
# Dumps are kept in target/bench/instructions/ (callgrind_annotate them for more).
set -euo pipefail
export OPEN_LOOP=0
export PORT_OFFSET=${PORT_OFFSET:-300}
if ! command -v valgrind >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
source "$(dirname "$0")/stack.sh"
export RUST_LOG=off
HDRS=(-H "cookie: $COOKIE" -H "user-agent: $UA")
HERE=$PWD/benches
CG=$PERF_OUT/instructions
rm -rf "$CG"; mkdir -p "$CG"
BREAKDOWN=${BREAKDOWN:-gw_protected gw_public gw_429 gw_verify}
IDUR=${IDUR:-5s}
VG=(valgrind --tool=callgrind --instr-atstart=no --dump-line=no)

declare -A IR REQS NON2XX
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
# Waits (valgrind starts slowly) until `curl $1` succeeds.
wait_url() { for _ in $(seq 600); do curl -sf -o /dev/null "$@" && return 0; sleep 0.1; done; echo "never answered: $*" >&2; exit 1; }

# measure name url "pids under callgrind" [wrk args...]
measure() {
  local name=$1 url=$2 sut=$3; shift 3
  want "$name" || return 0
  "${SIDE[@]}" wrk -t1 -c8 -d3s "$@" "$url" >/dev/null 2>&1 || true   # warm-up, uninstrumented
  local p
  for p in $sut; do callgrind_control -i on "$p" >/dev/null; callgrind_control -z "$p" >/dev/null; done
  local out; out=$("${SIDE[@]}" wrk -t1 -c8 -d"$IDUR" "$@" "$url")
  for p in $sut; do callgrind_control -d "$name" "$p" >/dev/null; callgrind_control -i off "$p" >/dev/null; done
  sleep 0.5
  local total=0 f
  for p in $sut; do
    f=$(ls -t "$CG"/cg."$p".* | head -1)
    cp "$f" "$CG/$name.$p.out"
    total=$((total + $(awk '/^(totals|summary):/ {print $2; exit}' "$f")))
  done
  REQS[$name]=$(echo "$out" | awk '/requests in/ {print $1}')
  NON2XX[$name]=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  IR[$name]=$((total / REQS[$name]))
  echo "$name: ${IR[$name]} instructions/request over ${REQS[$name]} requests${NON2XX[$name]:+ (non-2xx ${NON2XX[$name]})}" >&2
}
under_cg() { # run a server under callgrind on the SUT core; prints its pid
  "${SUT[@]}" "${VG[@]}" --callgrind-out-file="$CG/cg.%p" "$@" >/dev/null 2>"$CG/vg.$$.$RANDOM.log" &
  echo $!
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

P_NGX=18182; P_NGXA=18183; P_NGXA_V=18184; P_BARE=18185; P_GW=18186; P_GWNC=18187; P_GWT=18188; P_NGXV=18189
nginx_conf() { # dir, http block body
  mkdir -p "$tmp/$1"
  cat > "$tmp/$1/nginx.conf" <<NGINX
worker_processes 1; master_process off; daemon off; pid $tmp/$1/pid; error_log $tmp/$1/err warn;
events { worker_connections 1024; }
http { access_log off; $2 }
NGINX
}
PROXY='proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";'
AUTHREQ_LOC='location = /_verify { internal; proxy_pass http://verifier; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri; }'

if want nginx; then
  nginx_conf cg_ngx "upstream app { server 127.0.0.1:$UP; keepalive 64; }
    server { listen 127.0.0.1:$P_NGX; location / { $PROXY } }"
  pid=$(under_cg nginx -c "$tmp/cg_ngx/nginx.conf" -p "$tmp/cg_ngx"); pids+=("$pid")
  wait_url "http://127.0.0.1:$P_NGX/public/x"
  measure nginx "http://127.0.0.1:$P_NGX/public/x" "$pid"; stop "$pid"
fi
if want nginx_authreq; then
  nginx_conf cg_ngxa "upstream app { server 127.0.0.1:$UP; keepalive 64; }
    upstream verifier { server 127.0.0.1:$P_NGXA_V; keepalive 64; }
    server { listen 127.0.0.1:$P_NGXA_V; location / { return 204; } }
    server { listen 127.0.0.1:$P_NGXA; $AUTHREQ_LOC location / { auth_request /_verify; $PROXY } }"
  pid=$(under_cg nginx -c "$tmp/cg_ngxa/nginx.conf" -p "$tmp/cg_ngxa"); pids+=("$pid")
  wait_url "http://127.0.0.1:$P_NGXA/public/x"
  measure nginx_authreq "http://127.0.0.1:$P_NGXA/public/x" "$pid"; stop "$pid"
fi
for v in pingora pingora_glibc; do
  want $v || continue
  alloc=mimalloc; [ $v = pingora_glibc ] && alloc=system
  export BARE_ALLOC=$alloc
  pid=$(under_cg "$BARE" "127.0.0.1:$P_BARE" "127.0.0.1:$UP"); pids+=("$pid")
  wait_url "http://127.0.0.1:$P_BARE/public/x"
  measure $v "http://127.0.0.1:$P_BARE/public/x" "$pid"; stop "$pid"
done

if want gw_public || want gw_protected || want gw_429 || want gw_verify; then
  gateway_toml $P_GW 100000 > "$tmp/cg-gateway.toml"
  pid=$(under_cg "$BIN" gateway --config "$tmp/cg-gateway.toml"); pids+=("$pid")
  wait_url "http://127.0.0.1:$P_GW/readyz"
  measure gw_public "http://127.0.0.1:$P_GW/public/x" "$pid"
  measure gw_protected "http://127.0.0.1:$P_GW/app/x" "$pid" "${HDRS[@]}"
  measure gw_429 "http://127.0.0.1:$P_GW/limited/x" "$pid"
  measure gw_verify "http://127.0.0.1:$P_GW/verify" "$pid" "${HDRS[@]}"
  stop "$pid"
fi
if want gw_nocache; then
  gateway_toml $P_GWNC 0 > "$tmp/cg-gateway-nocache.toml"
  pid=$(under_cg "$BIN" gateway --config "$tmp/cg-gateway-nocache.toml"); pids+=("$pid")
  wait_url "http://127.0.0.1:$P_GWNC/readyz"
  measure gw_nocache "http://127.0.0.1:$P_GWNC/app/x" "$pid" "${HDRS[@]}"
  stop "$pid"
fi
if want nginx_verify; then
  # The gateway trusts nginx (loopback) to describe the original request (X-Original-URI).
  { echo 'trusted_proxies = ["127.0.0.1/32"]'; gateway_toml $P_GWT 100000; } > "$tmp/cg-gateway-trusted.toml"
  gpid=$(under_cg "$BIN" gateway --config "$tmp/cg-gateway-trusted.toml"); pids+=("$gpid")
  nginx_conf cg_ngxv "upstream app { server 127.0.0.1:$UP; keepalive 64; }
    upstream verifier { server 127.0.0.1:$P_GWT; keepalive 64; }
    server { listen 127.0.0.1:$P_NGXV;
      location = /_verify { internal; proxy_pass http://verifier/verify; proxy_http_version 1.1;
        proxy_set_header Connection \"\"; proxy_pass_request_body off; proxy_set_header Content-Length \"\";
        proxy_set_header X-Original-URI \$request_uri; }
      location / { auth_request /_verify; $PROXY } }"
  npid=$(under_cg nginx -c "$tmp/cg_ngxv/nginx.conf" -p "$tmp/cg_ngxv"); pids+=("$npid")
  wait_url "http://127.0.0.1:$P_GWT/readyz"
  wait_url -H "cookie: $COOKIE" -A "$UA" "http://127.0.0.1:$P_NGXV/app/x"
  measure nginx_verify "http://127.0.0.1:$P_NGXV/app/x" "$npid $gpid" "${HDRS[@]}"
  stop "$npid"; stop "$gpid"
fi

base=${IR[pingora]:-}
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
label() {
  case $1 in
    nginx) echo 'nginx `proxy_pass`';;
    nginx_authreq) echo 'nginx + `auth_request` (204 verifier, same process)';;
    pingora) echo 'bare Pingora 0.9, mimalloc (`benches/bare_pingora.rs`)';;
    pingora_glibc) echo 'bare Pingora 0.9, glibc malloc';;
    gw_public) echo 'gateway, public route';;
    gw_protected) echo 'gateway, protected route, warm cache';;
    gw_nocache) echo 'gateway, protected route, cache off (gateway only, not Redis)';;
    gw_429) echo 'gateway, 429';;
    gw_verify) echo 'gateway, forward-auth `/verify` (no upstream)';;
    nginx_verify) echo 'nginx + `auth_request` to the gateway'"'"'s `/verify` (both processes)';;
  esac
}
echo
echo "| variant | instructions / request | vs bare Pingora (mimalloc) |"
echo "| --- | ---: | ---: |"
for v in nginx nginx_authreq pingora_glibc pingora gw_public gw_protected gw_nocache gw_429 gw_verify nginx_verify; do
  [ -n "${IR[$v]:-}" ] || continue
  echo "| $(label $v) | $(printf "%'d" "${IR[$v]}") | $(ratio "${IR[$v]}" "$base") |"
done
echo
echo "Targets (instructions per request against bare Pingora with mimalloc, this run):"
echo "- protected, warm cache: $(ratio "${IR[gw_protected]:-}" "$base") (target <= 1.10)"
echo "- public: $(ratio "${IR[gw_public]:-}" "$base") (target <= 1.05)"
echo "- 429: $(ratio "${IR[gw_429]:-}" "$base") (target <= 0.50)"
echo "- forward-auth /verify: $(ratio "${IR[gw_verify]:-}" "$base") (target <= 0.60)"
echo "- nginx + gateway /verify against nginx + a 204 verifier: $(ratio "${IR[nginx_verify]:-}" "${IR[nginx_authreq]:-}")"

if [ -n "$base" ]; then
  for v in $BREAKDOWN; do
    [ -n "${IR[$v]:-}" ] || continue
    echo
    echo "Where $v's instructions go against bare Pingora (per request, by crate; top 14):"
    python3 "$HERE/callgrind_crates.py" \
      "$(ls "$CG"/pingora.*.out | head -1)" "${REQS[pingora]}" \
      "$(ls "$CG"/"$v".*.out | head -1)" "${REQS[$v]}"
  done
fi
echo
echo "callgrind (valgrind $(valgrind --version | sed 's/valgrind-//')), wrk -t1 -c8 -d$IDUR after a 3 s warm-up; $(nproc) CPUs; $(uname -r); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
