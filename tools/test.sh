#!/usr/bin/env bash
# Installs what the tests need and runs every test. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The DPDK backend's tests need the system DPDK 22.11 (Debian's packages; bindgen needs
# libclang); the live testbed test (mbox-core/tests/testbed.rs, tools/testbed.sh) needs
# network namespaces, nginx, curl, wrk, ab (apache2-utils), ethtool and python3 (which also reduces
# eve.json for the comparison with Suricata's); the README's examples use jq; the control tests lint metrics with
# promtool (Debian's prometheus package, installed without its recommendations: only promtool is
# used) and draw the graph with graphviz; the service files (configs/systemd) are checked by
# systemd-analyze and logrotate.
# Installed when missing and possible (root with apt).
packages=(dpdk dpdk-dev libdpdk-dev pkg-config clang libclang-dev iproute2 ethtool python3 nginx-light curl wrk apache2-utils jq)
lean_packages=(prometheus graphviz logrotate systemd)
missing=()
pkg-config --exists libdpdk 2>/dev/null || missing+=(dpdk)
for tool in ip ethtool python3 nginx curl wrk ab jq promtool dot logrotate systemd-analyze; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        # Another install holding apt's lock (unattended upgrades, a second job) is waited for.
        wait_lock=(-o DPkg::Lock::Timeout=600)
        DEBIAN_FRONTEND=noninteractive apt-get "${wait_lock[@]}" update -q
        DEBIAN_FRONTEND=noninteractive apt-get "${wait_lock[@]}" install -y -q "${packages[@]}"
        DEBIAN_FRONTEND=noninteractive apt-get "${wait_lock[@]}" install -y -q --no-install-recommends "${lean_packages[@]}"
    elif [[ " ${missing[*]} " == *" dpdk "* ]]; then
        echo "tools/test.sh: DPDK is not installed and cannot be (not root): apt-get install ${packages[*]}" >&2
        exit 1
    else
        echo "tools/test.sh: ${missing[*]} missing (not root): the live testbed and promtool checks will skip" >&2
    fi
fi
# The live QUIC test runs aioquic's client and server (tools/quic-peer.py): from PyPI.
if command -v python3 >/dev/null && ! python3 -c 'import aioquic' 2>/dev/null; then
    python3 -m pip install -q aioquic || echo "tools/test.sh: aioquic could not be installed: the live QUIC test will fail as root" >&2
fi
features=(--features mbox-core/dpdk)
# As root (as in CI) the testbed can be built and promtool installed, so the tests that need
# them must run rather than skip.
if [ "$(id -u)" = 0 ]; then
    export MBOX_REQUIRE_TESTBED=1
    export MBOX_REQUIRE_FUZZ=1
fi

# A check that cannot run here (no root, a tool missing) says so and appends a line to this
# file; the summary at the end counts them, so that a skip is never silent.
MBOX_SKIP_LOG=$(mktemp)
export MBOX_SKIP_LOG
trap 'rm -f "$MBOX_SKIP_LOG"' EXIT
started=$SECONDS

# cargo-nextest runs the tests; fall back to plain `cargo test` where it cannot be installed.
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked || echo "cargo-nextest unavailable: using cargo test"
fi
# cargo-fuzz runs the fuzz targets under libFuzzer (on stable: tools/fuzz.sh says why); where
# it cannot be installed tools/fuzz.sh skips loudly (it fails as root, as in CI, where it can).
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || echo "cargo-fuzz unavailable: the fuzz targets will not run"
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
# The README's walk-through (mboxctl new, build, run, change, rebuild, reload), exactly as
# written; it builds the release binaries as the README's first command does.
tools/walkthrough.sh
# Every fuzz target for a few seconds from its kept seeds (docs/fuzzing.md, "In CI"): a parser
# that now crashes, hangs or runs out of memory on them or near them fails the suite. The
# seconds are few because the suite must stay under 10 minutes on a 2-core machine: this step
# (cargo-fuzz's install, the instrumented build, 16 targets x 3 s) cost about 4 minutes there
# with one build job (docs/fuzzing.md, "In CI").
tools/fuzz.sh "${MBOX_FUZZ_SECONDS:-3}"

skipped=$(sort -u "$MBOX_SKIP_LOG" | grep -c . || true)
if [ "$skipped" -gt 0 ]; then
    echo "tools/test.sh: all tests passed in $((SECONDS - started)) s; $skipped checks SKIPPED (they could not run here):"
    sort -u "$MBOX_SKIP_LOG" | sed 's/^/  - /'
else
    echo "tools/test.sh: all tests passed in $((SECONDS - started)) s; no check skipped"
fi
