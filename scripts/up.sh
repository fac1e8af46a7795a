#!/usr/bin/env bash
# Runs the whole AuthFlow stack on embedded defaults (no Redis or database server needed).
# Extra flags go to `authflow up`, e.g. --redis-url redis://127.0.0.1:6379.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends cmake build-essential pkg-config >/dev/null
fi
cargo build --release --locked --bin authflow
exec ./target/release/authflow up "$@"
