#!/usr/bin/env bash
# Installs the system packages AuthFlow's build and tests need, when they are missing:
# cmake (Pingora's build), redis-server and PostgreSQL (the test harness starts its own
# instances on free ports), Chromium and chromedriver (the browser test), nginx (in front
# of the gateway in the forward-auth tests), h2load (nghttp2-client: HTTP/2 and gRPC
# benchmarks), and the Node packages of the test harness: the test OpenID provider and the
# gRPC/WebSocket peers (Node 20 and their npm packages, scripts/install-test-oidc.sh).
# Debian/Ubuntu; needs root or sudo.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# redis-cli creates the test Redis Cluster (redis-cli --cluster create).
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
# The test harness runs Debian's server binaries (and the `postgres` user they come with).
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! id postgres >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# nginx in front of the gateway, for the forward-auth (auth_request) tests.
command -v nginx >/dev/null 2>&1 || need+=(nginx)
# h2load, the HTTP/2 load generator of the HTTP/2 and gRPC benchmarks.
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
# Node (`node --check` parses the k6 load-test scripts; the test OpenID provider runs on it)
# comes from install-test-oidc.sh below, which needs 20 or newer (bookworm's own is 18).
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  echo "install-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

"$(dirname "$0")/install-test-oidc.sh"
