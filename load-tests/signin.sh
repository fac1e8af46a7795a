#!/usr/bin/env bash
# Sign-ins per second of the auth service on this machine, next to the ceiling the argon2
# parameters allow (hashing threads / time of one verify, measured here too).
#   load-tests/signin.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"; $sudo apt-get install -y -qq wrk >/dev/null; }
./scripts/install-deps.sh
cargo build --release --locked --bin authflow >&2
tmp=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
REDIS=16380; AUTH=18011
redis-server --port $REDIS --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >/dev/null & pids+=($!)
cat > "$tmp/auth.toml" <<TOML
listen = "127.0.0.1:$AUTH"
[redis]
url = "redis://127.0.0.1:$REDIS"
timeout = "500ms"
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
RUST_LOG=error ./target/release/authflow auth --config "$tmp/auth.toml" & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$AUTH/health" >/dev/null && break; sleep 0.1; done
curl -sf -o /dev/null -H 'content-type: application/json' \
  -d '{"email":"load@example.com","password":"correct horse battery"}' "http://127.0.0.1:$AUTH/api/v1/simple_auth/signup"
# Serial sign-ins give the time of one (argon2 verify + HTTP + Redis + SQLite); the ceiling
# is one sign-in per core at that time. Then load every core and compare.
rate() { wrk -t1 -c"$1" -d"${DURATION:-15s}" -s load-tests/signin.lua "http://127.0.0.1:$AUTH/api/v1/simple_auth/signin" | tee /dev/stderr | awk '/Requests\/sec/ {print $2}'; }
serial=$(rate 1)
cores=$(nproc)
loaded=$(rate $((2 * cores)))
awk -v s="$serial" -v l="$loaded" -v n="$cores" 'BEGIN {
  printf "\none sign-in alone: %.1f ms (%.1f/s serial)\n", 1000 / s, s
  printf "ceiling: %d cores x %.1f/s = %.1f sign-ins/s (argon2id m=19456 t=2 p=1)\n", n, s, n * s
  printf "measured with %d concurrent clients: %.1f sign-ins/s = %.2f of the ceiling\n", 2 * n, l, l / (n * s)
}'
