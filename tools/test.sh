#!/usr/bin/env bash
# Installs what the tests need and runs every test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-nextest runs the tests; fall back to plain `cargo test` where it cannot be installed.
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked || echo "cargo-nextest unavailable: using cargo test"
fi

# The integration tests load the plugins as shared libraries: build them (same profile) first.
cargo build --workspace --all-targets

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
# Doc tests (nextest does not run them).
cargo test -p mbox-abi -p mbox-core --doc
