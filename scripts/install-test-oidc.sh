#!/usr/bin/env bash
# The Node packages of the test harness, each pinned by its package-lock.json: the test
# OpenID provider (tests/support/oidc/: panva's oidc-provider) and the gRPC and WebSocket
# peers (tests/support/peers/: grpc-js, proto-loader, ws). Node.js 20 or newer with npm, then
# `npm ci` in each when its node_modules is missing or older than its lock. Called by
# install-deps.sh; needs root or sudo only to install Node.
#
# Node comes from Debian when its nodejs is 20 or newer (trixie: 20.19), else from NodeSource's
# node_20.x repository (bookworm's own nodejs is 18, which jose 6 and oidc-provider 9 do not
# support).
set -euo pipefail
cd "$(dirname "$0")/.."

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$(node_major)" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  candidate=$(apt-cache policy nodejs | awk '/Candidate:/ { print $2 }')
  if [ "${candidate%%.*}" -ge 20 ] 2>/dev/null; then
    echo "install-test-oidc: installing nodejs $candidate and npm from Debian" >&2
    $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  else
    echo "install-test-oidc: installing nodejs 20 from NodeSource (Debian has $candidate)" >&2
    $sudo apt-get install -y -qq --no-install-recommends ca-certificates curl gnupg >/dev/null
    $sudo mkdir -p /usr/share/keyrings
    curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key \
      | $sudo gpg --dearmor --yes -o /usr/share/keyrings/nodesource.gpg
    echo "deb [signed-by=/usr/share/keyrings/nodesource.gpg] https://deb.nodesource.com/node_20.x nodistro main" \
      | $sudo tee /etc/apt/sources.list.d/nodesource.list >/dev/null
    $sudo apt-get update -qq
    # NodeSource's nodejs carries npm; pin it over Debian's older nodejs.
    $sudo apt-get install -y -qq --no-install-recommends -t nodistro nodejs >/dev/null
  fi
  if [ "$(node_major)" -lt 20 ]; then
    echo "install-test-oidc: node $(node --version 2>/dev/null || echo missing) is older than 20" >&2
    exit 1
  fi
fi

for dir in tests/support/oidc tests/support/peers; do
  if [ ! -f "$dir/node_modules/.package-lock.json" ] \
    || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "install-test-oidc: npm ci in $dir" >&2
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
done
