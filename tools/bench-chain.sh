#!/usr/bin/env bash
# The paper's chain-length experiment: chains of 1 to 8 NFs that each read every reassembled
# byte (stream-hash), run (a) consolidated — one TCP monitor in mbox's stack, shared by every NF
# through FLOW/TCP/DATA_RDY events — and (b) as the mOS-style baseline — every NF gets the raw
# packets and runs its own copy of the same monitor code (stream-hash mode = "own-stack") —
# plus the cost of each stack module with no NF (L2/3 only, + TCP state, + reassembly), and of
# one NF that unsubscribes from each connection's bytes after its first 300 (the per-flow
# customization: the stack stops reassembling those connections).
# Inputs: generated traffic with 8 KB responses, and every bundled capture read as one input,
# 20 times over, each capture moved in time so that each pass makes new flows.
# Every row is run REPEAT times (default 5), in rounds of all rows, and the median is kept:
# compare rows of one run, not runs. Writes OUT/chain.tsv, OUT/chain.md and OUT/chain.svg.
# Usage: tools/bench-chain.sh [FLOWS] [OUT]   (defaults: 100000 docs/bench)
#        RENDER_ONLY=1 tools/bench-chain.sh '' OUT   (the table and the plot from OUT/chain.tsv)
set -euo pipefail
cd "$(dirname "$0")/.."
flows=${1:-100000}
out=${2:-docs/bench}
repeat=${REPEAT:-5}
max_chain=${MAX_CHAIN:-8}
mkdir -p "$out"
if [ -z "${RENDER_ONLY:-}" ]; then
    cargo build --release --workspace --quiet
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT

    # Generate once, replay from the page cache: the rows then measure mbox, not the generator.
    ./target/release/mbox gen --out "$dir/traffic.pcap" --flows "$flows" --udp-flows 0 --response-bytes 8192 --concurrency 256 2> /dev/null
    # Long connections, where unsubscribing early has most of each connection still to come.
    ./target/release/mbox gen --out "$dir/long.pcap" --flows $((flows / 200 + 1)) --udp-flows 0 --response-bytes 1000000 --concurrency 64 2> /dev/null
    captures=$(find testdata/pcaps -maxdepth 1 \( -name '*.pcap' -o -name '*.pcapng' \) | sort | sed 's/.*/"&"/' | paste -sd, -)
    declare -A inputs=([generator]="\"$dir/traffic.pcap\"" [long]="\"$dir/long.pcap\"" [captures]="[$captures]\nrepeat = ${CAPTURE_PASSES:-20}\nretime = \"1h\"")

    # One NF table per chain member. $1: mode (events, own-stack, or stop: events, unsubscribing
    # after 300 bytes), $2: chain length.
    chain() {
        local mode=$1 k=$2 i
        for i in $(seq 1 "$k"); do
            printf '[[nf]]\nname = "hash%s"\nplugin = "stream-hash"\n' "$i"
            case $mode in
                own-stack) printf 'subscribe = ["PKT"]\nargs = { mode = "own-stack" }\n' ;;
                stop) printf 'args = { mode = "events", stop_after_bytes = 300 }\n' ;;
                *) printf 'args = { mode = "events" }\n' ;;
            esac
        done
    }

    # The rows: a config file each, named by its position; rows.tsv says what each one is.
    rows=0
    row() {
        local input_name=$1 setup=$2 k=$3 monitor=$4 nfs=$5
        rows=$((rows + 1))
        printf 'plugin_dir = "target/release"\n[input]\npcap = %b\n[tcp]\nmonitor = "%s"\n%s\n' \
            "${inputs[$input_name]}" "$monitor" "$nfs" > "$dir/row$rows.toml"
        printf '%s\t%s\t%s\n' "$input_name" "$setup" "$k" >> "$dir/rows.tsv"
    }
    for input_name in generator captures; do
        row "$input_name" "L2/3 only" 0 off ""
        row "$input_name" "+ TCP state" 0 state ""
        row "$input_name" "+ TCP reassembly" 0 reassembly ""
        row "$input_name" unsubscribing 1 auto "$(chain stop 1)"
        for k in $(seq 1 "$max_chain"); do
            row "$input_name" consolidated "$k" auto "$(chain events "$k")"
            row "$input_name" baseline "$k" off "$(chain own-stack "$k")"
        done
    done
    row long "+ TCP state" 0 state ""
    row long consolidated 1 auto "$(chain events 1)"
    row long unsubscribing 1 auto "$(chain stop 1)"

    # Rounds of every row, so that a noisy minute on a shared machine hits one run of many rows
    # rather than every run of one row. Each run appends "packets cpu_s wall_s input_cpu_s".
    for round in $(seq 1 "$repeat"); do
        for r in $(seq 1 "$rows"); do
            ./target/release/mbox run "$dir/row$r.toml" --quiet --report "$dir/report.json" > /dev/null
            jq -r '[.input.packets, .cpu_s, .wall_s, .input.cpu_s] | @tsv' "$dir/report.json" >> "$dir/runs$r.tsv"
        done
        echo "round $round of $repeat done" >&2
    done

    # Per row, the run with the median CPU time.
    {
        printf 'input\tsetup\tnfs\tpackets\tcpu_s_per_Mpkt\tkpps\tcpu_s_per_Mpkt_without_input\n'
        for r in $(seq 1 "$rows"); do
            what=$(sed -n "${r}p" "$dir/rows.tsv")
            sort -t$'\t' -k2,2g "$dir/runs$r.tsv" | awk -F'\t' -v n="$repeat" -v what="$what" 'NR == int((n + 1) / 2) {
                printf "%s\t%d\t%.3f\t%.0f\t%.3f\n", what, $1, $2 / $1 * 1e6, $1 / $3 / 1e3, ($2 - $4) / $1 * 1e6 }'
        done
    } > "$out/chain.tsv"
fi

# The table, with the ratios the experiment is about.
awk -F'\t' '
NR == 1 { next }
$3 == 0 { module_cost[$1, $2] = $5 }
$3 == 0 && $1 != "long" { module[$1] = module[$1] sprintf("| %s | %s | %.3f | %.3f | %s |\n", $1, $2, $5, $7, $6); next }
{ cost[$1, $2, $3] = $5; rate[$1, $2, $3] = $6; net[$1, $2, $3] = $7; if ($3 > max) max = $3 }
END {
    print "CPU-s/Mpkt: CPU seconds of every thread per million packets; \"without input\": less the input"
    print "thread (reading the capture, which a NIC does in a live deployment).\n"
    print "Stack modules, no NF (the differences are the modules):\n"
    print "| input | stack | CPU-s/Mpkt | without input | kpps |\n|---|---|---|---|---|"
    split("generator captures", order, " ")
    for (o = 1; o <= 2; o++) printf "%s", module[order[o]]
    printf "\nLong connections (1 MB responses), one NF: reading every byte %.3f CPU-s/Mpkt; unsubscribing from each connection after 300 bytes %.3f; no NF, TCP state only, %.3f.\n", cost["long", "consolidated", 1], cost["long", "unsubscribing", 1], module_cost["long", "+ TCP state"]
    for (o = 1; o <= 2; o++) {
        i = order[o]
        printf "\n**%s**: chains of stream-hash NFs\n\n", i
        print "| NFs | consolidated CPU-s/Mpkt | without input | kpps | baseline CPU-s/Mpkt | without input | kpps | baseline / consolidated | without input |"
        print "|---|---|---|---|---|---|---|---|---|"
        for (k = 1; k <= max; k++)
            printf "| %d | %.3f | %.3f | %s | %.3f | %.3f | %s | %.2fx | %.2fx |\n", k, cost[i, "consolidated", k], net[i, "consolidated", k], rate[i, "consolidated", k], cost[i, "baseline", k], net[i, "baseline", k], rate[i, "baseline", k], cost[i, "baseline", k] / cost[i, "consolidated", k], net[i, "baseline", k] / net[i, "consolidated", k]
        printf "\nOne NF that unsubscribes from each connection after 300 bytes: %.3f CPU-s/Mpkt, against %.3f for one reading every byte.\n", cost[i, "unsubscribing", 1], cost[i, "consolidated", 1]
        printf "\n%d NFs cost %.2fx one NF consolidated (baseline: %.2fx); %d separate stacks cost %.2fx the consolidated chain.\n", max, cost[i, "consolidated", max] / cost[i, "consolidated", 1], cost[i, "baseline", max] / cost[i, "baseline", 1], max, cost[i, "baseline", max] / cost[i, "consolidated", max]
        printf "Without the input thread: %.2fx (baseline: %.2fx); %.2fx.\n", net[i, "consolidated", max] / net[i, "consolidated", 1], net[i, "baseline", max] / net[i, "baseline", 1], net[i, "baseline", max] / net[i, "consolidated", max]
    }
}' "$out/chain.tsv" > "$out/chain.md"

# The plot: CPU seconds per million packets against chain length, one panel per input; dashed:
# without the input thread.
awk -F'\t' '
NR == 1 { next }
$3 > 0 { v[$1, $2, $3] = $5; net[$1, $2, $3] = $7; pk[$1] = $4; if ($3 > max) max = $3; if ($5 > top[$1]) top[$1] = $5 }
END {
    w = 420; h = 300; l = 60; b = 40
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", 2 * w, h + 30
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    split("generator captures", order, " ")
    for (p = 1; p <= 2; p++) {
        i = order[p]; x0 = (p - 1) * w; ymax = top[i] * 1.1
        printf "<text x=\"%d\" y=\"18\" font-weight=\"bold\">%s (%.2f M packets)</text>\n", x0 + l, i, pk[i] / 1e6
        printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0 + l, h - b + 30, x0 + w - 20, h - b + 30
        printf "<line x1=\"%d\" y1=\"30\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", x0 + l, x0 + l, h - b + 30
        for (t = 0; t <= 4; t++) {
            y = h - b + 30 - t * (h - b - 10) / 4
            printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.2f</text>\n", x0 + l - 5, y + 4, ymax * t / 4
        }
        for (k = 1; k <= max; k++)
            printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x0 + l + (k - 0.5) * (w - l - 20) / max, h - b + 46, k
        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">NFs in the chain</text>\n", x0 + l + (w - l - 20) / 2, h + 24
        printf "<text x=\"%d\" y=\"%d\" transform=\"rotate(-90 %d %d)\" text-anchor=\"middle\">CPU-s per Mpkt</text>\n", x0 + 14, h / 2, x0 + 14, h / 2
        split("consolidated baseline", setups, " "); split("#1f77b4 #d62728", colors, " ")
        for (s = 1; s <= 2; s++) {
            pts = ""; dashed = ""
            for (k = 1; k <= max; k++) {
                x = x0 + l + (k - 0.5) * (w - l - 20) / max
                pts = pts sprintf("%.1f,%.1f ", x, h - b + 30 - v[i, setups[s], k] / ymax * (h - b - 10))
                dashed = dashed sprintf("%.1f,%.1f ", x, h - b + 30 - net[i, setups[s], k] / ymax * (h - b - 10))
            }
            printf "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n", pts, colors[s]
            printf "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"5,4\"/>\n", dashed, colors[s]
            printf "<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>\n", x0 + l + 10, 30 + 16 * s, colors[s], setups[s] (s == 1 ? " (one shared stack)" : " (a stack per NF)")
        }
        printf "<text x=\"%d\" y=\"%d\" fill=\"#555\">dashed: without the input thread</text>\n", x0 + l + 10, 30 + 16 * 3
    }
    print "</svg>"
}' "$out/chain.tsv" > "$out/chain.svg"
cat "$out/chain.md"
