#!/usr/bin/env bash
# Runs the README's walk-through (the shell block between `<!-- walkthrough -->` and
# `<!-- /walkthrough -->`) exactly as written, from the repository root, after the build of the
# README's first command; then checks what it printed: my-nf handled events and published no
# alert before the reload, and published alerts after it. Then the IDS quick start (between
# `<!-- walkthrough-ids -->` and `<!-- /walkthrough-ids -->`): the rules load, and eve.json and
# fast.log hold the alert. Leaves the repository as it found it (the walk-through creates
# plugins/my-nf and adds it to Cargo.lock).
set -euo pipefail
cd "$(dirname "$0")/.."
for f in plugins/my-nf my-nf.toml my-nf.sock my-nf-alerts.jsonl my-nf-summary.txt ids-out; do
    [ ! -e "$f" ] || { echo "walkthrough: $f exists (a walk-through of your own?): remove it first" >&2; exit 1; }
done
cargo build --release --workspace --quiet
work=$(mktemp -d)
cp Cargo.lock "$work/Cargo.lock"
cleanup() {
    rm -rf plugins/my-nf my-nf.toml my-nf.sock my-nf-alerts.jsonl my-nf-summary.txt ids-out
    cp "$work/Cargo.lock" Cargo.lock
    rm -rf "$work"
}
trap cleanup EXIT
sed -n '/^<!-- walkthrough -->$/,/^<!-- \/walkthrough -->$/p' README.md | sed '1,2d;$d' | sed '$d' > "$work/walkthrough.sh"
[ -s "$work/walkthrough.sh" ] || { echo "walkthrough: no walk-through block in README.md" >&2; exit 1; }
bash -euo pipefail "$work/walkthrough.sh" > "$work/out.txt" 2> "$work/err.txt" || {
    echo "walkthrough: the README's walk-through failed:" >&2
    cat "$work/out.txt" "$work/err.txt" >&2
    exit 1
}
cat "$work/out.txt"
fail() { echo "walkthrough: $1" >&2; cat "$work/out.txt" "$work/err.txt" >&2; exit 1; }
# The two `stats | grep my-nf` outputs are split by the reload's line.
before=$(sed -n '1,/^reloaded my-nf /p' "$work/out.txt")
after=$(sed -n '/^reloaded my-nf /,$p' "$work/out.txt")
grep -q '^my-nf events in: PKT' <<< "$before" || fail "my-nf handled no events before the reload"
! grep -q '^my-nf events out' <<< "$before" || fail "my-nf published alerts before the change"
grep -q 'handed [0-9]* bytes of state' <<< "$after" || fail "the reload handed no state over"
! grep -q 'byte for byte the one that was running' <<< "$after" || fail "the reload loaded the library that was running, not the rebuilt one"
grep -q '^my-nf events out: ALERT/MY_NF [1-9]' <<< "$after" || fail "no alert after the change"
grep -q '"mbox_type":"ALERT/MY_NF"' my-nf-alerts.jsonl || fail "the logger wrote no ALERT/MY_NF"

# The IDS quick start: rules checked, an alert in eve.json and fast.log, the log directory gone.
sed -n '/^<!-- walkthrough-ids -->$/,/^<!-- \/walkthrough-ids -->$/p' README.md | sed '1,2d;$d' | sed '$d' > "$work/ids.sh"
[ -s "$work/ids.sh" ] || { echo "walkthrough: no IDS quick start block in README.md" >&2; exit 1; }
bash -euo pipefail "$work/ids.sh" > "$work/out.txt" 2> "$work/err.txt" || fail "the README's IDS quick start failed"
cat "$work/out.txt"
grep -q '^10 of 10 rules load, 0 refused$' "$work/out.txt" || fail "rules check did not load the custom rules"
grep -q '"event_type":"alert".*"signature_id":9000001' "$work/out.txt" || fail "mbox ids wrote no alert to eve.json"
grep -q '\[\*\*\] \[1:9000001:1\] PEERS log4j JNDI lookup in HTTP \[\*\*\]' "$work/out.txt" || fail "mbox ids wrote no fast.log line"
[ ! -e ids-out ] || fail "the quick start left ids-out behind"
echo "walkthrough: the README's walk-through works as written"
