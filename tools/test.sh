#!/usr/bin/env bash
# Installs what the tests need and runs every test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The DPDK backend's tests need the system DPDK 22.11 (Debian's packages; bindgen needs
# libclang). Installed when missing and possible (root with apt).
dpdk_packages=(dpdk dpdk-dev libdpdk-dev pkg-config clang libclang-dev)
if ! pkg-config --exists libdpdk 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${dpdk_packages[@]}"
    else
        echo "tools/test.sh: DPDK is not installed and cannot be (not root): apt-get install ${dpdk_packages[*]}" >&2
        exit 1
    fi
fi
features=(--features mbox-core/dpdk)

# cargo-nextest runs the tests; fall back to plain `cargo test` where it cannot be installed.
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked || echo "cargo-nextest unavailable: using cargo test"
fi

# The integration tests load the plugins as shared libraries: build them (same profile) first.
cargo build --workspace --all-targets "${features[@]}"

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "${features[@]}"
else
    cargo test --workspace --no-fail-fast "${features[@]}"
fi
# Doc tests (nextest does not run them).
cargo test -p mbox-abi -p mbox-core --doc "${features[@]}"
