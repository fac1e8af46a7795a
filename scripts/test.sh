#!/usr/bin/env bash
# The whole test suite, as CI runs it: system deps, formatting, lints, then every unit and
# integration test (they start real redis-server / PostgreSQL instances on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
